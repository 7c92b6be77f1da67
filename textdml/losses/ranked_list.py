from __future__ import annotations

from typing import ClassVar

import torch

from textdml.distances import BaseDistance, LpDistance, as_distance
from textdml.indices import TupleIndices, label_masks
from textdml.losses.base import BaseLoss, Reduction, reduce_losses
from textdml.losses.needs import LossNeeds
from textdml.registry import LOSSES

# Added once per reference column to each weight sum (as the reference code), so that an anchor
# with nothing to learn from divides 0 by a small number instead of 0 by 0.
WEIGHT_EPS = 1e-5


@LOSSES.register("ranked_list")
class RankedListLoss(BaseLoss):
    """Ranked list loss of Wang et al.: every anchor ranks its positives before its negatives by a margin.

    For each anchor, positives farther than ``alpha - margin`` are pulled inside that boundary and
    negatives closer than ``alpha`` are pushed beyond it. Within each set the violating pairs are
    weighted by ``exp(T * violation)`` (``Tp = 0`` gives plain means, the paper's "RLL-Simpler"),
    and the two sets are mixed by ``imbalance``.

    Formula: ``L_i = (1 - imbalance) * sum_p w_p (d_ip - (alpha - margin)) / sum_p w_p + imbalance * sum_n w_n (alpha - d_in) / sum_n w_n``,
    with ``w_p = exp(Tp (d_ip - (alpha - margin)))`` and ``w_n = exp(Tn (alpha - d_in))`` over the violating pairs.

    Args:
        margin: the gap between the positive boundary and the negative one (0.4 in the paper).
        Tn: temperature of the negative weights (10 in the paper).
        imbalance: the weight of the negative term, in [0, 1] (0.5: both alike).
        alpha: the negative boundary; ``1 + margin / 2`` when None (the paper's 1.2).
        Tp: temperature of the positive weights (0: every violating positive counts alike).
        distance: euclidean on L2-normalised embeddings by default; any distance where lower is
            closer.
        reduction: ``mean`` over the anchors (every row of ``embeddings``), ``sum`` or ``none``.

    Inputs:
        Labelled rows: every pair in the batch (the loss ranks whole lists, not mined tuples).

    Requirements:
        Several samples per class in a batch (an m-per-class sampler) for the positive term.

    Conventions:
        Equals pytorch-metric-learning's ``RankedListLoss`` (including its ``1e-5`` per column in
        the weight sums and the gradient through the weights). It also takes a reference set,
        which PML does not. A negative at distance exactly 0 counts here; PML skips it.

    References:
        Wang et al., "Ranked List Loss for Deep Metric Learning", CVPR 2019 (arXiv:1903.03238).

    Example:
        >>> import torch
        >>> loss = RankedListLoss(margin=0.4, Tn=10)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(input_kinds=("pairs", "triplets", "labelled"))
    citation = """@inproceedings{wang2019ranked,
  title={Ranked List Loss for Deep Metric Learning},
  author={Wang, Xinshao and Hua, Yang and Kodirov, Elyor and Hu, Guosheng and Garnier, Romain and Robertson, Neil M},
  booktitle={CVPR},
  year={2019}
}"""

    def __init__(
        self,
        margin: float = 0.4,
        Tn: float = 10.0,  # noqa: N803 (the paper's and PML's name)
        imbalance: float = 0.5,
        alpha: float | None = None,
        Tp: float = 0.0,  # noqa: N803
        distance: BaseDistance | str | None = None,
        reduction: Reduction = "mean",
    ):
        super().__init__()
        if not 0 <= imbalance <= 1:
            raise ValueError(f"RankedListLoss: imbalance must be in [0, 1], got {imbalance}")
        self.distance = as_distance(distance, LpDistance())
        if self.distance.higher_is_closer:
            raise ValueError(f"RankedListLoss: the boundaries are distances; {type(self.distance).__name__} is a "
                             "similarity. Use distance='lp'")
        self.margin = margin
        self.Tn = Tn
        self.Tp = Tp
        self.imbalance = imbalance
        self.alpha = 1 + margin / 2 if alpha is None else alpha
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
        positive, negative = label_masks(labels, None if same_set else ref_labels)
        if not (positive.any() or negative.any()):
            return self.empty_loss(embeddings, "the batch has no pair")
        dist = self.distance(embeddings, None if same_set else ref_embeddings)  # (N, M)
        pos_boundary = self.alpha - self.margin
        pos_violation = torch.where(positive & (dist > pos_boundary), dist - pos_boundary, 0.0)
        neg_violation = torch.where(negative & (dist < self.alpha), self.alpha - dist, 0.0)
        columns = dist.shape[1]
        pos_loss = self.weighted_mean(pos_violation, self.Tp, pos_violation > 0, columns)
        neg_loss = self.weighted_mean(neg_violation, self.Tn, neg_violation > 0, columns)
        return reduce_losses((1 - self.imbalance) * pos_loss + self.imbalance * neg_loss, self.reduction, embeddings)

    @staticmethod
    def weighted_mean(violation: torch.Tensor, temperature: float, active: torch.Tensor, columns: int) -> torch.Tensor:
        """Per-row mean of the violations weighted by ``exp(temperature * violation)``; (N,)."""
        weights = torch.where(active, torch.exp(temperature * violation), 0.0)
        return (weights * violation).sum(dim=1) / (weights.sum(dim=1) + WEIGHT_EPS * columns)

    def extra_repr(self) -> str:
        return (f"margin={self.margin}, alpha={self.alpha}, Tn={self.Tn}, Tp={self.Tp}, "
                f"imbalance={self.imbalance}, reduction={self.reduction!r}")
