"""The task side of graded-score losses (CoSENT, AnglE): pairs with a score, on one or many devices.

These losses rank every pair of the batch against every other, so across devices each process
computes the loss of the *whole* gathered batch: the gather's backward sums the W identical
gradients and DDP's average divides them by W, which is exactly the single-process gradient on
the concatenated batch (see ``textdml.distributed``).
"""

from __future__ import annotations

from typing import Any

import torch

from textdml.distributed import all_gather_no_grad, all_gather_sizes, all_gather_with_grad, world_size
from textdml.losses.needs import loss_needs


def takes_scores(loss: Any) -> bool:
    """Whether ``loss`` learns from ``(anchor, positive, score)`` pairs."""
    return loss_needs(loss).takes_scores


def scored_pairs_loss(loss: Any, first: torch.Tensor, second: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """``loss(first, scores, ref_embeddings=second)`` over the pairs of every device."""
    scores = scores.to(first.device)
    if world_size() > 1:
        sizes = all_gather_sizes(len(first), first.device)
        first, second = all_gather_with_grad(first, sizes), all_gather_with_grad(second, sizes)
        scores = all_gather_no_grad(scores, sizes)
    return loss(first, scores, ref_embeddings=second)


def check_score_column(values: list[Any], column: str, loss: Any, source: str = "train data") -> None:
    """Every score of a training column must be a number in the loss's range: name the first bad row."""
    low, high = loss.score_range
    for row, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise ValueError(f"{source}: column {column!r} row {row} is {value!r}; every score must be a number")
        if not low <= value <= high:
            raise ValueError(
                f"{source}: column {column!r} row {row} has score {value:g}, outside {type(loss).__name__}'s range "
                f"[{low:g}, {high:g}] ({loss.range_reason}). Rescale the column into [{low:g}, {high:g}] "
                "(e.g. 0-5 STS scores divided by 5), or set loss.score_range=[low, high] to the range of your scores."
            )
