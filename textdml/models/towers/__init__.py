"""Image and text towers for ``DualEncoder``: open_clip, Hugging Face CLIP / SigLIP, textdml
``Embedder``, timm, EfficientNet-Lite0 and any torch module.

Each tower module imports its library (open_clip, timm, transformers, torchvision) only when a
tower is built, so ``import textdml`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from textdml.models.towers.base import ImageTower, TextTower, Tower, to_rgb

# kind -> (module, image tower class, text tower class); None where a kind has no such side.
TOWER_CLASSES: dict[str, tuple[str, str | None, str | None]] = {
    "open_clip": ("openclip", "OpenClipImageTower", "OpenClipTextTower"),
    "hf_clip": ("hf_clip", "HfImageTower", "HfTextTower"),
    "hf_siglip": ("hf_clip", "HfImageTower", "HfTextTower"),
    "timm": ("timm_model", "TimmTower", None),
    "efficientnet_lite0": ("efficientnet_lite", "EfficientNetLiteTower", None),
    "module": ("module", "ModuleTower", None),
    "embedder": ("embedder", None, "EmbedderTower"),
}
# Kinds whose two towers are cut from one model (saved whole, sharing its logit scale).
WHOLE_MODEL_KINDS = ("open_clip", "hf_clip", "hf_siglip")
IMAGE_KINDS = tuple(kind for kind, (_, image, _) in TOWER_CLASSES.items() if image)
TEXT_KINDS = tuple(kind for kind, (_, _, text) in TOWER_CLASSES.items() if text)


def tower_class(kind: str, modality: str) -> Any:
    """The tower class of ``kind`` for ``modality`` (``"image"`` or ``"text"``)."""
    valid = IMAGE_KINDS if modality == "image" else TEXT_KINDS
    if kind not in valid:
        raise ValueError(f"unknown {modality} tower kind {kind!r}: valid kinds are {', '.join(valid)}")
    module_name, image_class, text_class = TOWER_CLASSES[kind]
    module = importlib.import_module(f"textdml.models.towers.{module_name}")
    return getattr(module, image_class if modality == "image" else text_class)


__all__ = ["IMAGE_KINDS", "TEXT_KINDS", "TOWER_CLASSES", "WHOLE_MODEL_KINDS", "ImageTower", "TextTower", "Tower",
           "to_rgb", "tower_class"]
