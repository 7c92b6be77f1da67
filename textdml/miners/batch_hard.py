from __future__ import annotations

import torch

from textdml.distances import BaseDistance
from textdml.indices import TripletIndices
from textdml.miners.batch_easy_hard import BatchEasyHardMiner
from textdml.registry import MINERS


@MINERS.register("batch_hard")
class BatchHardMiner(BatchEasyHardMiner):
    """One triplet per anchor: its hardest positive and its hardest negative (Hermans et al.).

    The hardest positive is the farthest sample of the anchor's class, the hardest negative the
    closest sample of any other class. With an m-per-class sampler this is the "batch hard"
    triplet loss of the paper, one of the strongest baselines for re-identification.

    Formula: ``(a, argmax_p d(a, p), argmin_n d(a, n))`` for every anchor ``a``.

    Args:
        distance: euclidean on L2-normalised embeddings by default, as pytorch-metric-learning.

    Inputs:
        Labelled rows; returns :class:`TripletIndices`, one per anchor that has both a positive
        and a negative.

    Requirements:
        P classes x K samples per batch (an m-per-class sampler), K >= 2.

    Conventions:
        Selects exactly the triplets of pytorch-metric-learning's BatchHardMiner.

    References:
        Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for Person Re-Identification", 2017.

    Example:
        >>> import torch
        >>> miner = BatchHardMiner()
        >>> len(miner(torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])))
        8
    """

    citation = """@article{hermans2017defense,
  title={In Defense of the Triplet Loss for Person Re-Identification},
  author={Hermans, Alexander and Beyer, Lucas and Leibe, Bastian},
  journal={arXiv preprint arXiv:1703.07737},
  year={2017}
}"""

    def __init__(self, distance: BaseDistance | str | None = None):
        super().__init__(pos_strategy="hard", neg_strategy="hard", distance=distance)

    def mine(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
    ) -> TripletIndices:
        pairs = super().mine(embeddings, labels, ref_embeddings, ref_labels, same_set)
        # Both picks are per anchor, so the positive and the negative pairs line up one to one.
        return TripletIndices(pairs.anchor_pos, pairs.positive, pairs.negative)
