"""Emoji images with their names as offline image–text data (``load_data("textdml:emoji", ...)``).

Images: Google's emoji set from ``emoji-datasource-google@16.0.0`` (images Apache-2.0, data MIT);
captions: emojibase ``en`` labels and tags from ``emojibase-data@17.0.0`` (MIT). Fetch both with
``bash scripts/fetch_emoji.sh``; they are read from ``$TEXTDML_EMOJI_DIR`` (default
``~/.cache/textdml/emoji``), nothing is copied into this repository.

Variants:

- ``captions``: image–caption pairs (``image`` = PNG path, ``text``, ``id``); held-out emoji (test).
- ``subcategory``: labelled images (``image``, ``label`` = one of ~99 subcategories); whole
  subcategories are held out (open-set). Skin-tone variants are left out: grouping an emoji with
  its own skin tones would be too easy to show learning.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from datasets import Dataset

from textdml.data.wordnet import check_split, in_held_out


def emoji_dir() -> Path:
    return Path(os.environ.get("TEXTDML_EMOJI_DIR", Path.home() / ".cache" / "textdml" / "emoji"))


def read_emoji(root: Path | None = None) -> list[dict]:
    """Every emoji with a Google image: unified code, image path, name, category, subcategory, caption."""
    root = root or emoji_dir()
    datasource = root / "emoji-datasource-google" / "package"
    emojibase = root / "emojibase-data" / "package" / "en" / "data.json"
    if not (datasource / "emoji.json").exists() or not emojibase.exists():
        raise FileNotFoundError(f"the emoji packages are not in {root}: run `bash scripts/fetch_emoji.sh {root}` "
                                "(or set TEXTDML_EMOJI_DIR to the folder that holds them)")
    labels = {entry["hexcode"]: entry for entry in json.loads(emojibase.read_text())}
    rows = []
    for entry in json.loads((datasource / "emoji.json").read_text()):
        image = datasource / "img" / "google" / "64" / entry["image"]
        if not entry.get("has_img_google") or not image.exists():
            continue
        code = entry["unified"]
        base = labels.get(code) or labels.get(code.replace("-FE0F", ""))
        caption = base["label"] if base else entry["name"].lower()
        tags = [t for t in (base or {}).get("tags", []) if t not in caption][:4]
        rows.append({"id": code, "image": str(image), "name": entry["name"].lower(), "category": entry["category"],
                     "subcategory": entry["subcategory"], "text": caption + (f" ({', '.join(tags)})" if tags else "")})
    return rows


def load_emoji(split: str = "train", name: str | None = None, held_out_fraction: float = 0.1, seed: int = 0,
               root: str | None = None) -> Dataset:
    """Build an emoji variant (see the module docstring); ``split`` is ``train`` or ``test``."""
    check_split(split)
    rows = read_emoji(Path(root) if root else None)
    name = name or "captions"
    if name == "captions":
        keep = [r for r in rows if (split == "test") == in_held_out(r["id"], held_out_fraction, seed)]
        return Dataset.from_dict({k: [r[k] for r in keep] for k in ("id", "image", "text")})
    if name == "subcategory":
        fraction = max(held_out_fraction, 0.2)
        keep = [r for r in rows if (split == "test") == in_held_out(r["subcategory"], fraction, seed)]
        return Dataset.from_dict({"id": [r["id"] for r in keep], "image": [r["image"] for r in keep],
                                  "label": [r["subcategory"] for r in keep]})
    raise ValueError(f"unknown emoji variant {name!r}; variants: ['captions', 'subcategory']")
