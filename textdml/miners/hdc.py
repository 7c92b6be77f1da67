from __future__ import annotations

import math

import torch

from textdml.distances import BaseDistance, LpDistance, as_distance
from textdml.indices import PairIndices, all_pairs
from textdml.miners.base import BaseMiner
from textdml.registry import MINERS


def hardest_fraction(values: torch.Tensor, fraction: float, largest: bool) -> torch.Tensor:
    """Boolean mask of the ``ceil(fraction * len)`` largest (or smallest) values."""
    k = math.ceil(fraction * len(values))
    # An unsorted top-k is several times faster than a sorted one (k is half a million pairs at
    # B=1024); the mask keeps the kept pairs in batch order.
    keep = torch.zeros_like(values, dtype=torch.bool)
    keep[torch.topk(values, k=k, largest=largest, sorted=False).indices] = True
    return keep


@MINERS.register("hdc")
class HDCMiner(BaseMiner):
    """Keeps the hardest fraction of the batch's positive and negative pairs (hard-aware deeply cascaded).

    HDC trains a cascade of models of growing depth, each on the samples the previous one found
    hard. This miner is its selection step: of all positive pairs it keeps the
    ``filter_percentage`` that are farthest apart, of all negative pairs the fraction that are
    closest; chaining miners with decreasing fractions gives the cascade.

    Formula: ``keep the top ceil(f * |P|) positive pairs by d(a, p) and the bottom ceil(f * |N|) negative pairs by d(a, n)``.

    Args:
        filter_percentage: the fraction of pairs to keep, in (0, 1].
        pos_pairs: filter the positive pairs (when False every positive pair is kept).
        neg_pairs: filter the negative pairs (when False every negative pair is kept).
        distance: euclidean on L2-normalised embeddings by default, as pytorch-metric-learning.

    Inputs:
        Labelled rows; returns :class:`PairIndices`.

    Requirements:
        Several samples per class per batch for positive pairs.

    Conventions:
        With both kinds filtered this selects the pairs of pytorch-metric-learning's HDCMiner.
        The fraction is over the whole batch, not per anchor, as in pytorch-metric-learning.

    References:
        Yuan, Yang, Zhang, "Hard-Aware Deeply Cascaded Embedding", ICCV 2017.

    Example:
        >>> import torch
        >>> miner = HDCMiner(filter_percentage=0.5)
        >>> pairs = miner(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]))  # 4 positive, 8 negative pairs
        >>> len(pairs.anchor_pos), len(pairs.anchor_neg)
        (2, 4)
    """

    citation = """@inproceedings{yuan2017hard,
  title={Hard-Aware Deeply Cascaded Embedding},
  author={Yuan, Yuhui and Yang, Kuiyuan and Zhang, Chao},
  booktitle={ICCV},
  year={2017}
}"""

    def __init__(
        self,
        filter_percentage: float = 0.5,
        pos_pairs: bool = True,
        neg_pairs: bool = True,
        distance: BaseDistance | str | None = None,
    ):
        super().__init__(as_distance(distance, LpDistance()))
        if not 0 < filter_percentage <= 1:
            raise ValueError(f"filter_percentage must be in (0, 1], got {filter_percentage}")
        self.filter_percentage = filter_percentage
        self.pos_pairs = pos_pairs
        self.neg_pairs = neg_pairs

    def mine(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
    ) -> PairIndices:
        mat = self.distance(embeddings, ref_embeddings)  # (N, M)
        pairs = all_pairs(labels, None if same_set else ref_labels)
        a1, p, a2, n = pairs.anchor_pos, pairs.positive, pairs.anchor_neg, pairs.negative
        # Hard positives are far apart, hard negatives close together (reversed for similarities).
        far_is_largest = not self.distance.higher_is_closer
        if self.pos_pairs:
            keep = hardest_fraction(mat[a1, p], self.filter_percentage, largest=far_is_largest)
            a1, p = a1[keep], p[keep]
        if self.neg_pairs:
            keep = hardest_fraction(mat[a2, n], self.filter_percentage, largest=not far_is_largest)
            a2, n = a2[keep], n[keep]
        return PairIndices(a1, p, a2, n)

    def extra_repr(self) -> str:
        return f"filter_percentage={self.filter_percentage}, pos_pairs={self.pos_pairs}, neg_pairs={self.neg_pairs}"
