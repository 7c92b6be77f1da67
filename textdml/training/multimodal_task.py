"""Moved to ``textdml.training.tasks.image_text``; this path is kept for one release."""

from textdml.training.tasks.image_text import ImageTextTask

__all__ = ["ImageTextTask"]
