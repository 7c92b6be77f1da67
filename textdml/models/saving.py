"""What kind of model a run holds, and (to come) the saved folder's file names and save/load/push."""

from __future__ import annotations

from typing import Any, Literal

ModelKind = Literal["text", "image_text"]


def model_kind(model: Any) -> ModelKind:
    """``"image_text"`` for a dual encoder (an image tower beside the text one), else ``"text"``.

    The one place that tells the two apart: code outside ``textdml.models`` asks this, never
    ``hasattr(model, "embed_images")``.
    """
    return "image_text" if hasattr(model, "embed_images") or hasattr(model, "encode_images") else "text"


def is_image_text(model: Any) -> bool:
    return model_kind(model) == "image_text"
