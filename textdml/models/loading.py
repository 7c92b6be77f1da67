"""Load any saved textdml model: a dual encoder folder or a text embedder (sentence-transformers layout).

Reading a folder sits above the model classes (it picks one), so it lives here rather than in
``textdml.models.saving``, which the classes themselves import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textdml.models.saving import (  # noqa: F401
    DUAL_ENCODER_CONFIG,
    is_dual_adapter_folder,
    is_dual_encoder_folder,
    is_sparse_model_folder,
)


def load_model(name_or_path: str | Path) -> Any:
    """``DualEncoder`` when the folder holds a dual-encoder config, ``SparseEmbedder`` for a sparse
    (SPLADE) folder, else ``Embedder``."""
    # Imported here: loading a model pulls in transformers, naming this function must not.
    if is_dual_adapter_folder(name_or_path):
        from textdml.models.adapters import load_dual_adapter

        return load_dual_adapter(name_or_path)
    if is_dual_encoder_folder(name_or_path):
        from textdml.models.dual_encoder import DualEncoder

        return DualEncoder.from_pretrained(name_or_path)
    if is_sparse_model_folder(name_or_path):
        from textdml.models.sparse import SparseEmbedder

        return SparseEmbedder.load(name_or_path)
    from textdml.models.embedder import Embedder

    return Embedder.from_pretrained(name_or_path)
