"""Moved to ``textdml.training.tasks`` (one task per objective); this path is kept for one release."""

from textdml.training.tasks.base import LossOutput
from textdml.training.tasks.embedding import EmbeddingTask, explicit_triplets

__all__ = ["EmbeddingTask", "LossOutput", "explicit_triplets"]
