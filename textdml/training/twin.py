"""Moved to ``textdml.training.tasks.twin``; this path is kept for one release."""

from textdml.training.tasks.twin import TwinTask, twin_for, twin_loss

__all__ = ["TwinTask", "twin_for", "twin_loss"]
