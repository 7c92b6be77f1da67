from __future__ import annotations

import json

import pytest

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from textdml.data.loading import load_data  # noqa: E402


@pytest.fixture
def fake_emoji_dir(tmp_path, monkeypatch):
    """The two npm packages' layout with a few emoji (no npm needed)."""
    datasource = tmp_path / "emoji-datasource-google" / "package"
    (datasource / "img" / "google" / "64").mkdir(parents=True)
    emoji, base = [], []
    for i in range(40):
        code = f"1F6{i:02X}"
        image = f"{code.lower()}.png"
        Image.new("RGBA", (8, 8), (i * 6, 0, 0, 255)).save(datasource / "img" / "google" / "64" / image)
        emoji.append({"name": f"THING {i}", "unified": code, "image": image, "has_img_google": True,
                      "category": "Objects", "subcategory": f"group-{i % 10}"})
        base.append({"hexcode": code, "label": f"thing number {i}", "tags": ["thing", f"tag{i}"]})
    emoji.append({"name": "NO IMAGE", "unified": "1F7FF", "image": "none.png", "has_img_google": False,
                  "category": "Objects", "subcategory": "group-0"})
    (datasource / "emoji.json").write_text(json.dumps(emoji))
    (tmp_path / "emojibase-data" / "package" / "en").mkdir(parents=True)
    (tmp_path / "emojibase-data" / "package" / "en" / "data.json").write_text(json.dumps(base))
    monkeypatch.setenv("TEXTDML_EMOJI_DIR", str(tmp_path))
    return tmp_path


def test_captions_hold_out_emoji(fake_emoji_dir):
    train = load_data("textdml:emoji", name="captions", split="train", held_out_fraction=0.25)
    test = load_data("textdml:emoji", name="captions", split="test", held_out_fraction=0.25)
    assert len(train) + len(test) == 40 and not set(train["id"]) & set(test["id"])
    assert train[0]["text"].startswith("thing number") and "tag" in train[0]["text"]


def test_subcategories_are_held_out_whole(fake_emoji_dir):
    train = load_data("textdml:emoji", name="subcategory", split="train", held_out_fraction=0.3)
    test = load_data("textdml:emoji", name="subcategory", split="test", held_out_fraction=0.3)
    assert len(test) and not set(train["label"]) & set(test["label"])


def test_missing_packages_name_the_fetch_script(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTDML_EMOJI_DIR", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="scripts/fetch_emoji.sh"):
        load_data("textdml:emoji", name="captions")
