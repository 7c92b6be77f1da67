"""Models: the text embedder, pooling, and their save / load."""

from textdml.models.dual_encoder import DualEncoder, create_dual_encoder
from textdml.models.embedder import Dense, Embedder
from textdml.models.pooling import Pooling

__all__ = ["Dense", "DualEncoder", "Embedder", "Pooling", "create_dual_encoder"]
