from __future__ import annotations

from typing import ClassVar

import torch

from textdml.distances import BaseDistance, CosineSimilarityDistance, as_distance
from textdml.indices import TupleIndices, to_pairs
from textdml.losses.base import BaseLoss, Reduction, reduce_losses
from textdml.losses.needs import LossNeeds
from textdml.losses.ops import pair_values
from textdml.registry import LOSSES


@LOSSES.register("intra_pair_variance")
class IntraPairVarianceLoss(BaseLoss):
    """Intra-pair variance loss of Yu and Tao: keep the positive pairs (and the negative pairs) alike.

    A tuple loss pulls pairs toward a margin but does not care whether the positive pairs end up
    evenly close; this loss penalises the spread. A positive pair pays, squared, for how far its
    similarity falls below ``(1 - pos_eps)`` times the mean positive similarity, a negative pair
    for how far it rises above ``(1 + neg_eps)`` times the mean negative one. The means are part
    of the graph. Meant to be added to a tuple loss (``multiple_losses``), as the paper adds it
    to the tuplet margin loss.

    Formula: ``L = mean_p relu((1 - e+) mean(s+) - s_p)^2 + mean_n relu(s_n - (1 + e-) mean(s-))^2``
    (with a distance the directions flip: positives above ``(1 + e+)`` times their mean pay).

    Args:
        pos_eps: the positive pairs' tolerance ``e+`` (0.01 as pytorch-metric-learning).
        neg_eps: the negative pairs' tolerance ``e-``.
        distance: cosine similarity by default; any distance works.
        reduction: each side's pair losses are averaged (``mean``), summed (``sum``) or averaged
            over the nonzero ones (``mean_nonzero``); the two sides are added.

    Inputs:
        Labelled rows, pairs or triplets (pairs from their labels), or the tuples of a miner.

    Requirements:
        Several rows per class in a batch (an m-per-class sampler), for positive pairs.

    Conventions:
        Matches pytorch-metric-learning's IntraPairVarianceLoss: every ordered pair counts, a
        side without pairs adds 0, and a batch with at most one pair on each side gives 0 (with
        a warning).
        Across devices the loss is a per-device estimate: this device's anchors against
        every device's rows, not one statistic over the whole global batch.

    References:
        Yu and Tao, "Deep Metric Learning with Tuplet Margin Loss", ICCV 2019.

    Example:
        >>> import torch
        >>> loss = IntraPairVarianceLoss(pos_eps=0.01, neg_eps=0.01)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(input_kinds=("pairs", "triplets", "labelled"), accepts_indices=True)
    citation = """@inproceedings{yu2019deep,
  title={Deep Metric Learning with Tuplet Margin Loss},
  author={Yu, Baosheng and Tao, Dacheng},
  booktitle={ICCV},
  year={2019}
}"""

    def __init__(
        self,
        pos_eps: float = 0.01,
        neg_eps: float = 0.01,
        distance: BaseDistance | str | None = None,
        reduction: Reduction = "mean",
    ):
        super().__init__()
        if reduction == "none":
            raise ValueError(
                "IntraPairVarianceLoss: reduction 'none' has no meaning for two sides of different sizes; "
                "use 'mean', 'sum' or 'mean_nonzero'"
            )
        self.pos_eps = pos_eps
        self.neg_eps = neg_eps
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
        pairs = to_pairs(indices, labels, None if same_set else ref_labels)
        if len(pairs.anchor_pos) <= 1 and len(pairs.anchor_neg) <= 1:
            # One pair has no spread to speak of (PML returns 0 here too).
            return self.empty_loss(embeddings, "the batch has at most one positive and one negative pair")
        values = self.distance(embeddings, None if same_set else ref_embeddings)  # (N, M)
        pos = pair_values(values, pairs.anchor_pos, pairs.positive)  # (P,)
        neg = pair_values(values, pairs.anchor_neg, pairs.negative)  # (Q,)
        # With a similarity the targets sit below the positives' mean and above the negatives';
        # with a distance, the other way round.
        sign = -1.0 if self.distance.higher_is_closer else 1.0
        loss = values.new_zeros(())
        if len(pos) > 0:
            # A positive pays for being farther than its target, a negative for being closer.
            spread = self.distance.margin((1 + sign * self.pos_eps) * pos.mean(), pos)
            loss = loss + reduce_losses(spread.clamp_min(0) ** 2, self.reduction, embeddings)
        if len(neg) > 0:
            spread = self.distance.margin(neg, (1 - sign * self.neg_eps) * neg.mean())
            loss = loss + reduce_losses(spread.clamp_min(0) ** 2, self.reduction, embeddings)
        return loss

    def extra_repr(self) -> str:
        return f"pos_eps={self.pos_eps}, neg_eps={self.neg_eps}, reduction={self.reduction!r}"
