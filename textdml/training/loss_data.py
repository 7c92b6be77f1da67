"""Moved to ``textdml.training.tasks.prepare`` (each task's ``prepare_data``); kept for one release."""

from textdml.training.tasks.prepare import fit_data_to_loss

__all__ = ["fit_data_to_loss"]
