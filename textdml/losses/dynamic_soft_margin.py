from __future__ import annotations

from typing import ClassVar, Literal

import torch

from textdml.distances import BaseDistance, LpDistance, as_distance
from textdml.indices import TupleIndices, label_masks, to_triplets
from textdml.losses.base import BaseLoss
from textdml.losses.needs import LossNeeds
from textdml.registry import LOSSES


@LOSSES.register("dynamic_soft_margin")
class DynamicSoftMarginLoss(BaseLoss):
    """Dynamic soft margin loss of Zhang and Rusinkiewicz: triplets weighted by the CDF of their own margins.

    Each triplet's ``x = d(a, p) - d(a, n)`` is weighted by the cumulative share of triplets
    with a smaller ``x``, read from a histogram kept as a moving average over batches: the
    hardest triplets (large ``x``) weigh most, the easy ones little, with no margin to tune.

    Formula: ``L = mean_t CDF(x_t) * x_t``, ``x_t = d(a, p) - d(a, n)``; the histogram has ``num_bins``
    bins over ``[min_val, -min_val]`` and moves by ``momentum`` per training batch.

    Args:
        min_val: the smallest ``x`` the histogram holds (-2 for euclidean distance on unit vectors).
        num_bins: number of histogram bins.
        momentum: the weight of the current batch in the histogram's moving average (the first
            batch sets it).
        distance: euclidean distance on L2-normalised embeddings (the histogram range assumes it).
        negatives: ``all``: every (anchor, positive, negative) triplet of the batch (or a
            miner's); ``hardest``: each positive pair (a, p) once, with the closest negative of
            ``a``'s row or ``p``'s column (the paper's patch-matching set-up); None: ``hardest``
            for pairs by position (``labels=None``), ``all`` otherwise, as pytorch-metric-learning.

    Inputs:
        Labelled rows, triplets, or pairs (set ``negatives="hardest"`` for the paper's in-batch
        hardest negatives: the trainer passes pair batches with their pair labels).

    Requirements:
        Several samples per class in a batch (an m-per-class sampler) for labelled rows.

    Conventions:
        Equals pytorch-metric-learning's ``DynamicSoftMarginLoss`` forward and backward (the
        gradient also flows through the current batch's share of the histogram). Unlike PML, the
        stored histogram is a buffer, detached after each step (PML keeps the graph and fails on
        the second backward), updated only in training mode, and ``x`` outside the range goes to
        the end bins (PML raises an index error). By position with more ref rows than anchors,
        only the anchors' pairs count (PML also averages in a zero per extra ref row); PML's
        backward fails by position (it fills the distance matrix in place). Across devices each
        device keeps its own histogram (the state is not synchronised).

    References:
        Zhang and Rusinkiewicz, "Learning Local Descriptors with a CDF-Based Dynamic Soft Margin",
        ICCV 2019.

    Example:
        >>> import torch
        >>> loss = DynamicSoftMarginLoss()
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(input_kinds=("pairs", "triplets", "labelled"), accepts_indices=True)
    citation = """@inproceedings{zhang2019learning,
  title={Learning Local Descriptors with a CDF-Based Dynamic Soft Margin},
  author={Zhang, Linguang and Rusinkiewicz, Szymon},
  booktitle={ICCV},
  year={2019}
}"""

    histogram: torch.Tensor

    def __init__(
        self,
        min_val: float = -2.0,
        num_bins: int = 10,
        momentum: float = 0.01,
        distance: BaseDistance | str | None = None,
        negatives: Literal["all", "hardest"] | None = None,
    ):
        super().__init__()
        if negatives not in (None, "all", "hardest"):
            raise ValueError(f"DynamicSoftMarginLoss: negatives must be 'all', 'hardest' or None, got {negatives!r}")
        if num_bins < 1:
            raise ValueError(f"DynamicSoftMarginLoss: num_bins must be >= 1, got {num_bins}")
        if min_val >= 0:
            raise ValueError(f"DynamicSoftMarginLoss: min_val must be < 0 (the range is [min_val, -min_val]), "
                             f"got {min_val}")
        if not 0 < momentum <= 1:
            raise ValueError(f"DynamicSoftMarginLoss: momentum must be in (0, 1], got {momentum}")
        self.distance = as_distance(distance, LpDistance())
        d = self.distance
        if not (isinstance(d, LpDistance) and d.p == 2 and not d.squared and d.normalize_embeddings):
            raise ValueError("DynamicSoftMarginLoss: the histogram range assumes euclidean distance on unit "
                             "vectors; use distance='lp' (p=2, normalize_embeddings=True)")
        self.min_val = min_val
        self.num_bins = int(num_bins)
        self.delta = 2 * abs(min_val) / num_bins
        self.momentum = momentum
        self.negatives = negatives
        self.register_buffer("histogram", torch.zeros(self.num_bins))
        self._by_position = False

    def resolve_labels(self, embeddings, labels, ref_embeddings, ref_labels):  # type: ignore[no-untyped-def]
        # labels=None means pairs by position: the hardest-negative form, not every triplet.
        self._by_position = labels is None
        return super().resolve_labels(embeddings, labels, ref_embeddings, ref_labels)

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
        indices: TupleIndices | None,
    ) -> torch.Tensor:
        negatives = self.negatives or ("hardest" if self._by_position else "all")
        if negatives == "hardest" and indices is not None:
            raise ValueError("DynamicSoftMarginLoss(negatives='hardest') finds its own negatives; remove the miner "
                             "or use negatives='all'")
        dist = self.distance(embeddings, None if same_set else ref_embeddings)  # (N, M)
        if negatives == "hardest":
            margins = self.hardest_negative_margins(dist, *label_masks(labels, None if same_set else ref_labels))
        elif indices is None:
            margins = self.all_triplet_margins(dist, *label_masks(labels, None if same_set else ref_labels))
        else:
            triplets = to_triplets(indices, labels, None if same_set else ref_labels)
            margins = dist[triplets.anchor, triplets.positive] - dist[triplets.anchor, triplets.negative]  # (T,)
        if len(margins) == 0:
            return self.empty_loss(embeddings, "the batch has no triplet (use an m-per-class sampler)")
        histogram, bins = self.updated_histogram(margins)
        if self.training:
            self.histogram.copy_(histogram.detach())
        return (torch.cumsum(histogram, 0)[bins] * margins).mean()

    @staticmethod
    def all_triplet_margins(dist: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        """``d(a, p) - d(a, n)`` for every valid triplet, ordered by (a, p, n); (T,).

        One row of the matrix per positive pair, masked to the anchor's negatives: about twice as
        fast as listing the triplets' indices and gathering (7 million triplets at B=1024).
        """
        anchors, positives = torch.where(positive)  # (K,)
        per_pair = dist[anchors, positives][:, None] - dist.index_select(0, anchors)  # (K, M)
        return torch.masked_select(per_pair, negative[anchors])

    @staticmethod
    def hardest_negative_margins(dist: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        """``d(a, p) - d(hardest negative)`` per positive pair, the negative searched in a's row and p's column.

        For pairs by position (positives on the diagonal) this is the paper's: the closest other
        ref to anchor i, or the closest other anchor to ref i.
        """
        negative_dist = dist.masked_fill(~negative, float("inf"))
        row_min = negative_dist.min(dim=1).values  # (N,)
        column_min = negative_dist.min(dim=0).values  # (M,)
        anchors, positives = torch.where(positive)
        hardest = torch.minimum(row_min[anchors], column_min[positives])
        found = torch.isfinite(hardest)  # a pair with no negative anywhere has no margin
        return dist[anchors[found], positives[found]] - hardest[found]

    def updated_histogram(self, margins: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The histogram after this batch (with gradient through the batch's share) and each margin's bin."""
        position = (margins - self.min_val) / self.delta
        bins = torch.floor(position).long().clamp(0, self.num_bins - 1)
        fraction = torch.frac(position)
        old = self.histogram.to(margins.dtype)
        momentum = self.momentum if old.sum() != 0 else 1.0
        # Each margin splits its unit of mass between its bin and the next, by where it falls.
        histogram = torch.scatter_add((1.0 - momentum) * old, 0, bins, momentum * (1 - fraction))
        histogram = torch.scatter_add(histogram, 0, (bins + 1).clamp(max=self.num_bins - 1), momentum * fraction)
        return histogram / histogram.sum(), bins

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, num_bins={self.num_bins}, momentum={self.momentum}, negatives={self.negatives!r}"
