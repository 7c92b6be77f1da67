"""Load any saved textdml model: a dual encoder folder or a text embedder (sentence-transformers layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DUAL_ENCODER_CONFIG = "textdml_dual_encoder.json"


def load_model(name_or_path: str | Path) -> Any:
    """``DualEncoder`` when the folder holds a dual-encoder config, else ``Embedder``."""
    from textdml.models.adapters import is_dual_adapter_folder, load_dual_adapter

    if is_dual_adapter_folder(name_or_path):
        return load_dual_adapter(name_or_path)
    if (Path(name_or_path) / DUAL_ENCODER_CONFIG).exists():
        from textdml.models.dual_encoder import DualEncoder

        return DualEncoder.from_pretrained(name_or_path)
    from textdml.models.embedder import Embedder

    return Embedder.from_pretrained(name_or_path)
