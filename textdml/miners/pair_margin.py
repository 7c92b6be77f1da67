from __future__ import annotations

import torch

from textdml.distances import BaseDistance, LpDistance, as_distance
from textdml.indices import PairIndices, label_masks
from textdml.miners.base import BaseMiner
from textdml.registry import MINERS


@MINERS.register("pair_margin")
class PairMarginMiner(BaseMiner):
    """Keeps the positive pairs farther apart than ``pos_margin`` and the negative pairs closer than ``neg_margin``.

    These are exactly the pairs a contrastive loss with the same margins learns from; the rest
    would contribute zero loss.

    Formula: ``keep p if d(a, p) > pos_margin``; ``keep n if d(a, n) < neg_margin`` (reversed for similarities).

    Args:
        pos_margin: positive pairs within it are already close enough.
        neg_margin: negative pairs beyond it are already far enough.
        distance: euclidean on L2-normalised embeddings by default, as pytorch-metric-learning.

    Inputs:
        Labelled rows; returns :class:`PairIndices`.

    Requirements:
        Several samples per class per batch for positive pairs.

    Conventions:
        Selects exactly the pairs of pytorch-metric-learning's PairMarginMiner.

    References:
        Hadsell, Chopra, LeCun, "Dimensionality Reduction by Learning an Invariant Mapping", CVPR 2006.

    Example:
        >>> import torch
        >>> miner = PairMarginMiner(pos_margin=0.0, neg_margin=2.1)  # every pair of unit vectors
        >>> len(miner(torch.randn(4, 3), torch.tensor([0, 0, 1, 1])))
        12
    """

    citation = """@inproceedings{hadsell2006dimensionality,
  title={Dimensionality Reduction by Learning an Invariant Mapping},
  author={Hadsell, Raia and Chopra, Sumit and LeCun, Yann},
  booktitle={CVPR},
  year={2006}
}"""

    def __init__(self, pos_margin: float = 0.2, neg_margin: float = 0.8, distance: BaseDistance | str | None = None):
        super().__init__(as_distance(distance, LpDistance()))
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin

    def mine(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
    ) -> PairIndices:
        mat = self.distance(embeddings, ref_embeddings)  # (N, M)
        positive, negative = label_masks(labels, None if same_set else ref_labels)
        # Filter on the matrix itself: no list of every pair is built first.
        if self.distance.higher_is_closer:
            keep_pos, keep_neg = positive & (mat < self.pos_margin), negative & (mat > self.neg_margin)
        else:
            keep_pos, keep_neg = positive & (mat > self.pos_margin), negative & (mat < self.neg_margin)
        return PairIndices(*torch.where(keep_pos), *torch.where(keep_neg))

    def extra_repr(self) -> str:
        return f"pos_margin={self.pos_margin}, neg_margin={self.neg_margin}"
