"""Small tensor operations shared by several losses (masked log-sum-exp forms, pair masks, aligned cosines)."""

from __future__ import annotations

import torch

from textdml.indices import PairIndices, TupleIndices, label_masks, to_pairs


def aligned_cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``(..., D), (..., D) -> (...)``: the cosine of aligned rows (broadcast), as ``F.normalize`` gives.

    ``a . b / (max(|a|, eps) * max(|b|, eps))`` equals the dot product of the ``F.normalize``d rows
    (the same ``eps``, a zero row scores 0), in value and gradient. Dividing the (...) dot products
    by the norms, instead of normalising first, writes no normalised (..., D) copies and has no
    backward through them: forward + backward take about half the time on CPU.
    """
    norms = torch.linalg.vector_norm(a, dim=-1).clamp_min(eps) * torch.linalg.vector_norm(b, dim=-1).clamp_min(eps)
    return (a * b).sum(dim=-1) / norms


def pair_masks(pairs: PairIndices, shape: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean (N, M) masks of the positive and the negative pairs in ``pairs``."""
    positive = torch.zeros(shape, dtype=torch.bool, device=device)
    negative = torch.zeros(shape, dtype=torch.bool, device=device)
    positive[pairs.anchor_pos, pairs.positive] = True
    negative[pairs.anchor_neg, pairs.negative] = True
    return positive, negative


def mined_pair_masks(
    indices: TupleIndices | None, labels: torch.Tensor, ref_labels: torch.Tensor | None, shape: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean (N, M) masks of the mined pairs (any miner output), or of every pair when ``indices`` is None.

    ``ref_labels`` is None for the same-set layout (the diagonal is then no pair). Every pair is
    read straight from the labels: listing a million pairs and scattering them back is slower.
    """
    if indices is None:
        return label_masks(labels, ref_labels)
    return pair_masks(to_pairs(indices, labels, ref_labels), shape, labels.device)


def pair_values(matrix: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``matrix[rows, cols]`` as a gather from the flattened matrix.

    Same values and gradient; the backward is a scatter-add, several times faster on CPU than
    advanced indexing's (a million negative pairs at B=1024).
    """
    flat_index = torch.add(cols, rows, alpha=matrix.shape[1])  # one pass, not a product then a sum
    return matrix.reshape(-1).gather(0, flat_index)


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
