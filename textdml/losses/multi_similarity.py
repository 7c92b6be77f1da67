from __future__ import annotations

from typing import ClassVar

import torch

from textdml.distances import BaseDistance, CosineSimilarityDistance, as_distance
from textdml.indices import TupleIndices
from textdml.losses.base import BaseLoss, Reduction, reduce_losses
from textdml.losses.needs import LossNeeds
from textdml.losses.ops import log1p_sum_exp, mined_pair_masks
from textdml.registry import LOSSES


@LOSSES.register("multi_similarity")
class MultiSimilarityLoss(BaseLoss):
    """Multi-similarity loss of Wang et al.: soft, weighted pulls and pushes for every pair of an anchor.

    Each anchor pays a soft maximum over its positives of how far they fall below the threshold
    ``base`` and a soft maximum over its negatives of how far they rise above it. ``alpha`` and
    ``beta`` set how sharply the hardest pairs dominate, so a pair is weighted by its own
    similarity (self-similarity) and by its neighbours' (relative similarity). Usually paired with
    the multi-similarity miner, which keeps only the informative pairs.

    Formula: ``L_i = 1/alpha * log(1 + sum_{p in P(i)} exp(-alpha (s_ip - base))) + 1/beta * log(1 + sum_{n in N(i)} exp(beta (s_in - base)))``.

    Args:
        alpha: sharpness of the positive term (2 in the paper).
        beta: sharpness of the negative term (50 in the paper).
        base: the similarity threshold ``lambda`` (0.5 for cosine similarity). With a distance
            the roles flip: positives are pulled below ``base``, negatives pushed above it.
        distance: cosine similarity by default; any distance (``lp``) works.
        reduction: ``mean`` over the anchors (every row of ``embeddings``), ``sum``, ``none``
            or ``mean_nonzero``.

    Inputs:
        Labelled rows (every pair in the batch), pairs or triplets (pairs from their labels), or
        the tuples of a miner (the multi-similarity miner in the paper).

    Requirements:
        Several samples per class in a batch (an m-per-class sampler) for the positive term.

    Conventions:
        Matches pytorch-metric-learning's MultiSimilarityLoss, including averaging over every
        anchor, also those without a mined pair. A batch without a positive pair still trains
        the negative term (no warning); only a batch without any pair gives the warning.

    References:
        Wang et al., "Multi-Similarity Loss with General Pair Weighting for Deep Metric
        Learning", CVPR 2019. Code: https://github.com/MalongTech/research-ms-loss

    Example:
        >>> import torch
        >>> loss = MultiSimilarityLoss(alpha=2, beta=50, base=0.5)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(input_kinds=("pairs", "triplets", "labelled"), accepts_indices=True)
    citation = """@inproceedings{wang2019multi,
  title={Multi-Similarity Loss with General Pair Weighting for Deep Metric Learning},
  author={Wang, Xun and Han, Xintong and Huang, Weilin and Dong, Dengke and Scott, Matthew R},
  booktitle={CVPR},
  year={2019}
}"""

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 50.0,
        base: float = 0.5,
        distance: BaseDistance | str | None = None,
        reduction: Reduction = "mean",
    ):
        super().__init__()
        if alpha <= 0 or beta <= 0:
            raise ValueError(f"alpha and beta must be > 0, got alpha={alpha}, beta={beta}")
        self.alpha = alpha
        self.beta = beta
        self.base = base
        self.distance = as_distance(distance, CosineSimilarityDistance())
        self.reduction = reduction

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
        indices: TupleIndices | None,
    ) -> torch.Tensor:
        shape = (len(embeddings), len(ref_embeddings))
        positive, negative = mined_pair_masks(indices, labels, None if same_set else ref_labels, shape)
        if not (positive.any() or negative.any()):
            return self.empty_loss(embeddings, "the batch has no pair")
        values = self.distance(embeddings, None if same_set else ref_embeddings)  # (N, M)
        # margin(x, y) > 0 when x is the closer: positives pay for being farther than base,
        # negatives for being closer than it, whatever the distance kind.
        pos_losses = log1p_sum_exp(self.alpha * self.distance.margin(self.base, values), positive) / self.alpha
        neg_losses = log1p_sum_exp(self.beta * self.distance.margin(values, self.base), negative) / self.beta
        return reduce_losses(pos_losses + neg_losses, self.reduction, embeddings)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, base={self.base}, reduction={self.reduction!r}"
