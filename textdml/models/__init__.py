"""Models: the text embedder, pooling, and their save / load."""

from textdml.models.embedder import Dense, Embedder
from textdml.models.pooling import Pooling

__all__ = ["Dense", "Embedder", "Pooling"]
