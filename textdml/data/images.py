"""Images in the data path: decoding (in DataLoader workers, batch by batch) and image column roles.

An image cell may be a PIL image, a ``datasets.Image`` value (``{"bytes", "path"}``) or a file path.
Transparent images are laid on white and every mode becomes RGB, so emoji and icons look as they
do on a page.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from textdml.data.roles import ROLES


@dataclass(frozen=True)
class ImageRoles:
    """Which column holds the image, and the caption (image–text pairs) or the class (labelled images)."""

    kind: str  # "image_text" or "labelled_images"
    image: str
    text: str | None = None
    label: str | None = None

    @property
    def text_columns(self) -> list[str]:
        return [self.text] if self.text else []


IMAGE_KINDS = {"image_text": "image, text (a caption per image)", "labelled_images": "image, label (a class per image)"}


def resolve_image_roles(column_names: Iterable[str], loss_name: str, input_kinds: Iterable[str],
                        rename: dict[str, str] | None = None) -> ImageRoles:
    """Map columns to the image roles and check that the loss trains on them (as ``resolve_roles``)."""
    columns, rename = list(column_names), dict(rename or {})
    for role, column in rename.items():
        if role not in (*ROLES, "image", "text"):
            raise ValueError(f"columns: unknown role {role!r}; image roles are image, text, label")
        if column not in columns:
            raise ValueError(f"columns: role {role!r} is mapped to column {column!r}, which the dataset does not "
                             f"have (columns found: {columns})")

    def column_for(role: str) -> str | None:
        return rename.get(role) or (role if role in columns else None)

    image, text, label = column_for("image"), column_for("text"), column_for("label")
    kinds = list(input_kinds)
    if image is None:
        raise ValueError(f"the dataset has no column for role 'image' (columns found: {columns}); loss {loss_name!r} "
                         f"trains on [{IMAGE_KINDS['image_text']}] or [{IMAGE_KINDS['labelled_images']}]. Map the "
                         "columns in the recipe, e.g. `columns: {image: path, text: caption}`.")
    kind = "image_text" if text is not None else "labelled_images" if label is not None else None
    if kind is None:
        raise ValueError(f"the dataset has an image column {image!r} but no 'text' (captions) or 'label' (classes) "
                         f"column (columns found: {columns}); map one with `columns: {{text: caption}}`")
    # Text losses carry over: pairs losses train on (image, caption), labelled losses on (image, class).
    accepted = [k for k in kinds if k in IMAGE_KINDS] + (["labelled_images"] if "labelled" in kinds else []) \
        + (["image_text"] if "pairs" in kinds else [])
    if kind not in accepted:
        raise ValueError(f"loss {loss_name!r} does not train on {kind} [{IMAGE_KINDS[kind]}]; "
                         f"it takes {', '.join(kinds)}")
    return ImageRoles(kind, image, text if kind == "image_text" else None, label if kind == "labelled_images" else None)


def load_image(value: Any, column: str = "image", row: int | None = None):
    """Any image cell -> an RGB ``PIL.Image`` (transparency flattened on white)."""
    from PIL import Image, UnidentifiedImageError

    where = f"column {column!r}" + (f" row {row}" if row is not None else "")
    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        value = io.BytesIO(value["bytes"]) if value.get("bytes") else value.get("path")
    if isinstance(value, str):
        if not os.path.exists(value):
            looks_like_path = os.sep in value or value.lower().endswith((".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"))
            raise (FileNotFoundError if looks_like_path else ValueError)(
                f"{where}: image file {value!r} does not exist" if looks_like_path
                else f"{where} holds text ({value[:40]!r}), not an image or an image path")
    if isinstance(value, Image.Image):
        image = value
    else:
        try:
            image = Image.open(value)
            image.load()
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"{where}: cannot read the image {getattr(value, 'name', value)!r}: {err}") from err
    return to_rgb(image)


def to_rgb(image):
    """RGBA / LA / palette-with-transparency on a white background; grayscale, CMYK... -> RGB."""
    from PIL import Image

    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB") if image.mode != "RGB" else image
