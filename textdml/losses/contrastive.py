from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from textdml.distances import BaseDistance, CosineSimilarityDistance, as_distance
from textdml.indices import TupleIndices, label_masks, to_pairs
from textdml.losses.base import BaseLoss, Reduction, reduce_losses
from textdml.losses.needs import LossNeeds
from textdml.losses.ops import pair_values
from textdml.registry import LOSSES


@LOSSES.register("contrastive")
class ContrastiveLoss(BaseLoss):
    """Contrastive (Siamese) loss of Hadsell, Chopra and LeCun.

    Positive pairs are pulled together until they are within ``pos_margin``; negative pairs are
    pushed apart until they are at least ``margin`` away. Similarities are turned into distances
    as ``1 - s`` (cosine distance for cosine similarity).

    Formula: ``L = y * relu(d - pos_margin)^power + (1 - y) * relu(margin - d)^power``.

    Args:
        margin: the distance a negative pair must exceed (0.5 for cosine distance, as
            sentence-transformers; 1.0 on normalised euclidean, as pytorch-metric-learning).
        pos_margin: the distance below which a positive pair costs nothing.
        distance: cosine similarity by default; ``lp`` for euclidean.
        power: 2 as in the paper and sentence-transformers, 1 as pytorch-metric-learning.
        reduction: ``mean`` over all pairs (sentence-transformers), or ``mean_nonzero``: the
            positive and the negative terms each averaged over their non-zero pairs, then added
            (pytorch-metric-learning's AvgNonZeroReducer).

    Inputs:
        Pairs with a 0/1 label (the data module passes the explicit pairs as ``indices``),
        labelled rows (every pair in the batch, or those of a miner).

    Conventions:
        sentence-transformers' ContrastiveLoss is exactly half of this loss with ``power=2``
        (Hadsell's 1/2 factor); pytorch-metric-learning's equals it with ``power=1``,
        ``distance=lp``, ``margin=1`` and ``reduction="mean_nonzero"``.

    References:
        Hadsell, Chopra, LeCun, "Dimensionality Reduction by Learning an Invariant Mapping", CVPR 2006.

    Example:
        >>> import torch
        >>> loss = ContrastiveLoss(margin=0.5)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(
        input_kinds=("pairs", "triplets", "scored_pairs", "labelled"),
        accepts_indices=True,
    )
    citation = """@inproceedings{hadsell2006dimensionality,
  title={Dimensionality Reduction by Learning an Invariant Mapping},
  author={Hadsell, Raia and Chopra, Sumit and LeCun, Yann},
  booktitle={CVPR},
  year={2006}
}"""

    def __init__(
        self,
        margin: float = 0.5,
        pos_margin: float = 0.0,
        distance: BaseDistance | str | None = None,
        power: float = 2.0,
        reduction: Reduction = "mean",
    ):
        super().__init__()
        self.margin = margin
        self.pos_margin = pos_margin
        self.distance = as_distance(distance, CosineSimilarityDistance())
        self.power = power
        self.reduction = reduction

    def as_distance_values(self, values: torch.Tensor) -> torch.Tensor:
        return 1 - values if self.distance.higher_is_closer else values

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
        indices: TupleIndices | None,
    ) -> torch.Tensor:
        dist = self.as_distance_values(self.distance(embeddings, None if same_set else ref_embeddings))  # (N, M)
        if indices is None and self.reduction != "none":
            return self.all_pairs_loss(embeddings, dist, labels, None if same_set else ref_labels)
        pairs = to_pairs(indices, labels, None if same_set else ref_labels)
        if len(pairs) == 0:
            return self.empty_loss(embeddings, "the batch has no pair")
        pos_losses = self.hinge(pair_values(dist, pairs.anchor_pos, pairs.positive) - self.pos_margin)
        neg_losses = self.hinge(self.margin - pair_values(dist, pairs.anchor_neg, pairs.negative))
        if self.reduction == "mean_nonzero":
            return reduce_losses(pos_losses, "mean_nonzero", embeddings) + reduce_losses(
                neg_losses, "mean_nonzero", embeddings
            )
        return reduce_losses(torch.cat([pos_losses, neg_losses]), self.reduction, embeddings)

    def hinge(self, x: torch.Tensor) -> torch.Tensor:
        # relu, as PML: its backward is one fused kernel, faster than clamp_min's.
        return F.relu(x) if self.power == 1 else F.relu(x) ** self.power

    def all_pairs_loss(self, embeddings: torch.Tensor, dist: torch.Tensor, labels: torch.Tensor,
                       ref_labels: torch.Tensor | None) -> torch.Tensor:
        """Every pair of the batch, on the (N, M) matrix with masks: the same value as gathering the
        pairs, without gathering (and scattering back in backward) a million entries at B=1024."""
        positive, negative = label_masks(labels, ref_labels)
        if not (positive.any() or negative.any()):
            return self.empty_loss(embeddings, "the batch has no pair")
        # Mask before the hinge (hinge(0) = 0) and count with count_nonzero(): a product with the
        # mask or a sum of booleans would first convert a (N, M) boolean matrix to floats.
        pos_losses = self.hinge(torch.where(positive, dist - self.pos_margin, 0.0))
        neg_losses = self.hinge(torch.where(negative, self.margin - dist, 0.0))
        if self.reduction == "mean_nonzero":
            return pos_losses.sum() / torch.count_nonzero(pos_losses).clamp_min(1) + \
                neg_losses.sum() / torch.count_nonzero(neg_losses).clamp_min(1)
        total = pos_losses.sum() + neg_losses.sum()
        count = torch.count_nonzero(positive) + torch.count_nonzero(negative)
        return total if self.reduction == "sum" else total / count
