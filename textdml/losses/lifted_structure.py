from __future__ import annotations

from typing import ClassVar

import torch

from textdml.distances import BaseDistance, LpDistance, as_distance
from textdml.indices import TupleIndices, to_pairs
from textdml.losses.base import BaseLoss
from textdml.losses.needs import LossNeeds
from textdml.losses.ops import masked_logsumexp, pair_masks
from textdml.registry import LOSSES


@LOSSES.register("lifted_structure")
class LiftedStructureLoss(BaseLoss):
    """Lifted structured loss of Oh Song et al.: each positive pair against all negatives of both its ends.

    A positive pair (i, j) pays its own distance plus a soft maximum over the negatives of i
    and of j of how far they reach inside ``neg_margin``: the batch's full pairwise matrix is
    "lifted" so that each pair sees every negative instead of the one of a triplet.

    Formula: ``L = mean_{(i, j)} relu( log(sum_{n in N(i) + N(j)} exp(neg_margin - d_n)) + d_ij - pos_margin )^2 / 2``.

    Args:
        neg_margin: the distance negatives should exceed (``alpha`` in the paper).
        pos_margin: the distance below which a positive pair costs nothing (0 in the paper).
        distance: euclidean on L2-normalised embeddings by default; with a similarity the margin
            terms flip (``s_n - neg_margin`` and ``pos_margin - s_ij``).

    Inputs:
        Labelled rows, pairs or triplets; or a miner's pairs (then the mined negative pairs of
        each end).

    Requirements:
        At least two samples of some class per batch (an m-per-class sampler).

    Conventions:
        With ``ref_embeddings`` the positive j is a reference row with no negative pairs of its
        own, so only the anchor's negatives enter (pytorch-metric-learning matches row numbers
        across the two sets there). A positive pair with no negative at all is skipped, where
        pytorch-metric-learning counts it with an empty log-sum-exp of 0; a mined pair listed
        twice counts once.

    References:
        Oh Song, Xiang, Jegelka, Savarese, "Deep Metric Learning via Lifted Structured Feature
        Embedding", CVPR 2016.

    Example:
        >>> import torch
        >>> loss = LiftedStructureLoss(neg_margin=1.0)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(accepts_indices=True)
    citation = """@inproceedings{ohsong2016deep,
  title={Deep Metric Learning via Lifted Structured Feature Embedding},
  author={Oh Song, Hyun and Xiang, Yu and Jegelka, Stefanie and Savarese, Silvio},
  booktitle={CVPR},
  year={2016}
}"""

    def __init__(self, neg_margin: float = 1.0, pos_margin: float = 0.0, distance: BaseDistance | str | None = None):
        super().__init__()
        self.neg_margin = neg_margin
        self.pos_margin = pos_margin
        self.distance = as_distance(distance, LpDistance())

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
        dist = self.distance(embeddings, None if same_set else ref_embeddings)  # (N, M)
        _, negative = pair_masks(pairs, dist.shape, dist.device)
        # distance.margin(x, y) is how much closer x is than y.
        neg_terms = self.distance.margin(dist, self.neg_margin)  # (N, M)
        anchor, positive = pairs.anchor_pos, pairs.positive
        terms, mask = neg_terms[anchor], negative[anchor]  # (P, M)
        if same_set:
            # The positive is a batch row too: its own negatives join the anchor's.
            terms = torch.cat([terms, neg_terms[positive]], dim=1)  # (P, 2M)
            mask = torch.cat([mask, negative[positive]], dim=1)
        negatives = masked_logsumexp(terms, mask)  # (P,)
        has_negative = mask.any(dim=1)
        if not has_negative.any():
            return self.empty_loss(embeddings, "the batch has no positive pair with a negative")
        pos_terms = self.distance.margin(self.pos_margin, dist[anchor, positive])  # (P,)
        losses = (negatives + pos_terms)[has_negative].clamp_min(0) ** 2 / 2
        return losses.mean()
