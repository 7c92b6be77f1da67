"""Models: the text embedder, the sparse (SPLADE) encoder, pooling, and their save / load."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textdml.models.dual_encoder import DualEncoder, create_dual_encoder
    from textdml.models.embedder import Dense, Embedder
    from textdml.models.pooling import Pooling
    from textdml.models.sparse import SparseEmbedder

__all__ = ["Dense", "DualEncoder", "Embedder", "Pooling", "SparseEmbedder", "create_dual_encoder"]

# Imported on first use: `textdml.models.identity` (needed by indexing and search) must not pull in
# transformers, which takes seconds to import.
_HOMES = {"Dense": "embedder", "Embedder": "embedder", "DualEncoder": "dual_encoder",
          "create_dual_encoder": "dual_encoder", "Pooling": "pooling", "SparseEmbedder": "sparse"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"textdml.models.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'textdml.models' has no attribute {name!r}")
