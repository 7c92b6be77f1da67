"""Moved to ``textdml.training.tasks.scores``; this path is kept for one release."""

from textdml.training.tasks.scores import check_score_column, scored_pairs_loss, takes_scores

__all__ = ["check_score_column", "scored_pairs_loss", "takes_scores"]
