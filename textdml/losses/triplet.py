from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from textdml.distances import BaseDistance, LpDistance, as_distance
from textdml.indices import TupleIndices, to_triplets
from textdml.losses.base import BaseLoss, Reduction, reduce_losses
from textdml.losses.needs import LossNeeds
from textdml.registry import LOSSES


@LOSSES.register("triplet")
class TripletLoss(BaseLoss):
    """Triplet margin loss: each anchor must be closer to its positive than to its negative by a margin.

    Without a miner every valid triplet in the batch is used (batch-all); with explicit
    (anchor, positive, negative) rows, exactly those triplets; with a miner, the mined ones.

    Formula: ``L = relu(d(a, p) - d(a, n) + margin)`` (for similarities: ``relu(s(a, n) - s(a, p) + margin)``).

    Args:
        margin: the required gap between the positive and the negative.
        distance: euclidean on L2-normalised embeddings by default (pytorch-metric-learning);
            sentence-transformers uses unnormalised euclidean with ``margin=5``.
        swap: use the closer of d(a, n) and d(p, n) as the negative distance (Balntas et al.).
        smooth_loss: ``softplus`` instead of ``relu`` (soft margin).
        reduction: ``mean_nonzero`` (mean over violating triplets, as pytorch-metric-learning),
            ``mean`` over all triplets (sentence-transformers), ``sum`` or ``none``.

    Inputs:
        Triplets (anchor, positive, negative), pairs (in-batch triplets from the pair labels), or
        labelled rows; any miner's output.

    Requirements:
        Labelled rows need at least two samples of some class per batch (an m-per-class sampler).

    References:
        Schroff, Kalenichenko, Philbin, "FaceNet: A Unified Embedding for Face Recognition and
        Clustering", CVPR 2015. Weinberger and Saul, "Distance Metric Learning for Large Margin
        Nearest Neighbor Classification", JMLR 2009.

    Example:
        >>> import torch
        >>> loss = TripletLoss(margin=0.1)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(input_kinds=("pairs", "triplets", "labelled"), accepts_indices=True)
    citation = """@inproceedings{schroff2015facenet,
  title={FaceNet: A Unified Embedding for Face Recognition and Clustering},
  author={Schroff, Florian and Kalenichenko, Dmitry and Philbin, James},
  booktitle={CVPR},
  year={2015}
}"""

    def __init__(
        self,
        margin: float = 0.05,
        distance: BaseDistance | str | None = None,
        swap: bool = False,
        smooth_loss: bool = False,
        reduction: Reduction = "mean_nonzero",
    ):
        super().__init__()
        self.margin = margin
        self.distance = as_distance(distance, LpDistance())
        self.swap = swap
        self.smooth_loss = smooth_loss
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
        triplets = to_triplets(indices, labels, None if same_set else ref_labels)
        if len(triplets) == 0:
            return self.empty_loss(embeddings, "the batch has no (anchor, positive, negative) triplet")
        # One (N, M) matrix, then indexing: gathering (T, D) rows per triplet would cost T * D memory.
        dist = self.distance(embeddings, None if same_set else ref_embeddings)  # (N, M)
        ap = dist[triplets.anchor, triplets.positive]
        an = dist[triplets.anchor, triplets.negative]
        if self.swap:
            ref_dist = dist if same_set else self.distance(ref_embeddings)  # (M, M)
            pn = ref_dist[triplets.positive, triplets.negative]
            an = torch.maximum(an, pn) if self.distance.higher_is_closer else torch.minimum(an, pn)
        violation = self.distance.margin(an, ap) + self.margin  # > 0 when the negative is too close
        losses = F.softplus(violation) if self.smooth_loss else violation.clamp_min(0)
        return reduce_losses(losses, self.reduction, embeddings)
