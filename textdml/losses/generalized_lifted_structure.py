from __future__ import annotations

from typing import ClassVar

import torch

from textdml.distances import BaseDistance, LpDistance, as_distance
from textdml.indices import TupleIndices
from textdml.losses.base import BaseLoss, Reduction, reduce_losses
from textdml.losses.needs import LossNeeds
from textdml.losses.ops import masked_logsumexp, mined_pair_masks
from textdml.registry import LOSSES


@LOSSES.register("generalized_lifted_structure")
class GeneralizedLiftedStructureLoss(BaseLoss):
    """Generalised lifted structure loss of Hermans et al.: a soft batch-hard triplet per anchor.

    Each anchor compares a soft maximum of its positive distances with a soft minimum of its
    negative distances. Unlike the lifted structure loss of Oh Song et al. it works per anchor,
    not per positive pair, and its positives sit inside a log-sum-exp too, so it reads as a
    smooth version of the batch-hard triplet loss.

    Formula: ``L_a = relu( log(sum_{p in P(a)} exp(d_ap - pos_margin)) + log(sum_{n in N(a)} exp(neg_margin - d_an)) )``.

    Args:
        neg_margin: the distance negatives should exceed.
        pos_margin: the distance below which positives cost nothing.
        distance: euclidean on L2-normalised embeddings by default; with a similarity the
            margin terms flip (``pos_margin - s_ap`` and ``s_an - neg_margin``).
        reduction: ``mean`` over anchors (pytorch-metric-learning), ``mean_nonzero``, ``sum`` or
            ``none``.

    Inputs:
        Labelled rows, pairs or triplets; or a miner's pairs (then each anchor's mined positives
        and negatives).

    Requirements:
        At least two samples of some class per batch (an m-per-class sampler).

    Conventions:
        An anchor needs a positive and a negative, as in the paper (an empty log-sum-exp is
        ``-inf``); pytorch-metric-learning replaces an empty log-sum-exp with 0 and averages over
        every row. The two agree when every row has a positive and a negative.

    References:
        Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for Person Re-Identification", 2017.

    Example:
        >>> import torch
        >>> loss = GeneralizedLiftedStructureLoss(neg_margin=1.0)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(accepts_indices=True)
    citation = """@article{hermans2017defense,
  title={In Defense of the Triplet Loss for Person Re-Identification},
  author={Hermans, Alexander and Beyer, Lucas and Leibe, Bastian},
  journal={arXiv preprint arXiv:1703.07737},
  year={2017}
}"""

    def __init__(
        self,
        neg_margin: float = 1.0,
        pos_margin: float = 0.0,
        distance: BaseDistance | str | None = None,
        reduction: Reduction = "mean",
    ):
        super().__init__()
        self.neg_margin = neg_margin
        self.pos_margin = pos_margin
        self.distance = as_distance(distance, LpDistance())
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
        dist = self.distance(embeddings, None if same_set else ref_embeddings)  # (N, M)
        positive, negative = mined_pair_masks(indices, labels, None if same_set else ref_labels, dist.shape)
        valid = positive.any(dim=1) & negative.any(dim=1)  # (N,)
        if not valid.any():
            return self.empty_loss(embeddings, "no anchor has both a positive and a negative")
        if not valid.all():  # (usually every row is valid: no copy of the (N, M) matrices then)
            dist, positive, negative = dist[valid], positive[valid], negative[valid]
        # distance.margin(x, y) is how much closer x is than y.
        pos_terms = masked_logsumexp(self.distance.margin(self.pos_margin, dist), positive)
        neg_terms = masked_logsumexp(self.distance.margin(dist, self.neg_margin), negative)
        return reduce_losses((pos_terms + neg_terms).clamp_min(0), self.reduction, embeddings)
