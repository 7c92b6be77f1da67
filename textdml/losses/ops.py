"""Small tensor operations shared by several losses (masked log-sum-exp forms, pair masks)."""

from __future__ import annotations

import torch

from textdml.miners.base import PairIndices


def pair_masks(pairs: PairIndices, shape: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean (N, M) masks of the positive and the negative pairs in ``pairs``."""
    positive = torch.zeros(shape, dtype=torch.bool, device=device)
    negative = torch.zeros(shape, dtype=torch.bool, device=device)
    positive[pairs.anchor_pos, pairs.positive] = True
    negative[pairs.anchor_neg, pairs.negative] = True
    return positive, negative


def log1p_sum_exp(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-row ``log(1 + sum_{j in mask} exp(x_ij))``; 0 for a row with an empty mask."""
    masked = x.masked_fill(~mask, float("-inf"))
    # The extra zero column is the "1 +": it also keeps an empty row finite (log 1 = 0).
    return torch.cat([masked, masked.new_zeros(len(x), 1)], dim=1).logsumexp(dim=1)


def masked_logsumexp(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-row logsumexp over the entries in ``mask``; ``-inf`` (with a zero gradient) for an empty row."""
    has_entry = mask.any(dim=1)
    # An all -inf row has a NaN gradient in logsumexp: give empty rows zeros, then mask the result.
    x = x.masked_fill(~mask, float("-inf")).masked_fill(~has_entry[:, None], 0.0)
    return x.logsumexp(dim=1).masked_fill(~has_entry, float("-inf"))
