"""Hub ids for models and data given as local folders, and the local paths a public file must not show.

A model trained from a local folder still has a Hub id somewhere: the Hugging Face cache folder
it sits in (``models--org--name``), its own model card's usage line, or its ``config.json``. A
card and an uploaded config name that id, never the path on the machine that trained it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from textdml.hub.layout import MODEL_CARD, OPEN_CLIP_CONFIG, TEXTDML_CONFIG

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
CACHE_FOLDER = re.compile(r"^models--([\w.-]+?)--([\w.-]+)$")
# Loading lines of model cards: SentenceTransformer("org/name"), from_pretrained('org/name'), hf-hub:org/name.
CARD_USAGE = re.compile(r"""(?:SentenceTransformer|from_pretrained|hf[-_]hub:)\(?\s*["']?(?:hf[-_]hub:)?([A-Za-z0-9][\w.-]*/[\w.-]+)["']""")
PLACEHOLDERS = ("path/to", "your-username", "user/name", "namespace/name", "username/", "{")


def looks_like_hub_id(value: str) -> bool:
    """``org/name`` that is not a local path."""
    return bool(HUB_ID.match(value)) and not Path(value).expanduser().exists()


def is_local_path(value: str) -> bool:
    return Path(value).expanduser().exists() or value.startswith(("/", "./", "../", "~")) or "\\" in value


def hub_id_for(name_or_path: str | os.PathLike | None) -> str | None:
    """The Hub id of a model named by id or by a local folder; None when no id can be found."""
    if name_or_path is None:
        return None
    value = str(name_or_path)
    if looks_like_hub_id(value):
        return value
    folder = Path(value).expanduser()
    if not folder.exists():
        return None
    for part in reversed(folder.resolve().parts):
        match = CACHE_FOLDER.match(part)
        if match:
            return f"{match.group(1)}/{match.group(2)}"
    if folder.is_file():
        folder = folder.parent
    textdml_config = read_json(folder / TEXTDML_CONFIG)
    for key in ("hub_id", "name"):
        if isinstance(textdml_config.get(key), str) and looks_like_hub_id(textdml_config[key]):
            return textdml_config[key]
    readme = folder / MODEL_CARD
    if readme.exists():
        for match in CARD_USAGE.finditer(readme.read_text(errors="replace")):
            candidate = match.group(1)
            if not any(p in candidate for p in PLACEHOLDERS) and looks_like_hub_id(candidate):
                return candidate
    for name in ("config.json", OPEN_CLIP_CONFIG):
        candidate = read_json(folder / name).get("_name_or_path")
        if isinstance(candidate, str) and looks_like_hub_id(candidate):
            return candidate
    return None


def public_name(value: str | os.PathLike) -> str:
    """A name fit for a public card: a Hub id as is, a local path as its Hub id or its last part."""
    text = str(value)
    if not is_local_path(text):
        return text
    return hub_id_for(text) or Path(text.rstrip("/\\")).name or "a local folder"


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def scrub_paths(text: str, paths: list[str | os.PathLike]) -> str:
    """Replace each local path (and its resolved form) in ``text`` by its last component."""
    variants: dict[str, str] = {}
    for path in paths:
        if not path:
            continue
        for form in {str(path), str(Path(path).expanduser().resolve())}:
            if len(form) > 1 and is_local_path(form):
                variants[form.rstrip("/")] = Path(form).name
    home = str(Path.home())
    if len(home) > 1:
        variants.setdefault(home, "~")
    for form in sorted(variants, key=len, reverse=True):  # longest first: a folder inside another
        text = text.replace(form, variants[form])
    return text
