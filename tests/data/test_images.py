from __future__ import annotations

import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from textdml.data.images import load_image, resolve_image_roles  # noqa: E402


def test_rgba_is_flattened_on_white_and_grayscale_becomes_rgb(tmp_path):
    transparent = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    transparent.putpixel((0, 0), (255, 0, 0, 255))
    image = load_image(transparent)
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (255, 0, 0) and image.getpixel((1, 1)) == (255, 255, 255)
    gray = tmp_path / "gray.png"
    Image.new("L", (4, 4), 128).save(gray)
    assert load_image(str(gray)).getpixel((0, 0)) == (128, 128, 128)
    assert load_image({"bytes": gray.read_bytes(), "path": None}).mode == "RGB"


def test_bad_image_cells_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="image file .*missing.png' does not exist"):
        load_image(str(tmp_path / "missing.png"), "image", 3)
    with pytest.raises(ValueError, match="column 'image' row 3 holds text"):
        load_image("a photo of a cat", "image", 3)
    broken = tmp_path / "broken.png"
    broken.write_text("not a png")
    with pytest.raises(ValueError, match="cannot read the image"):
        load_image(str(broken))


def test_image_roles():
    assert resolve_image_roles(["image", "text"], "clip", ("image_text",)).kind == "image_text"
    assert resolve_image_roles(["image", "label"], "triplet", ("labelled",)).kind == "labelled_images"
    assert resolve_image_roles(["path", "caption"], "clip", ("image_text",),
                               {"image": "path", "text": "caption"}).image == "path"
    with pytest.raises(ValueError, match="no column for role 'image'"):
        resolve_image_roles(["picture", "text"], "clip", ("image_text",))
    with pytest.raises(ValueError, match="does not train on labelled_images"):
        resolve_image_roles(["image", "label"], "clip", ("image_text",))
