"""Moved to ``textdml.training.tasks.denoising``; this path is kept for one release."""

from textdml.training.tasks.denoising import DenoisingTask, decoder_for, tie_to_encoder

__all__ = ["DenoisingTask", "decoder_for", "tie_to_encoder"]
