from __future__ import annotations

import torch

from textdml.distances import BaseDistance, LpDistance, as_distance
from textdml.indices import TripletIndices, all_triplets
from textdml.miners.base import BaseMiner
from textdml.miners.triplet_margin import select_triplets, triplet_margins
from textdml.registry import MINERS


@MINERS.register("batch_all")
class BatchAllMiner(BaseMiner):
    """Every valid triplet of the batch, or only those that still violate a margin (Hermans et al.).

    "Batch all" uses each (anchor, positive, negative) triplet that the labels allow. With
    ``margin`` set, triplets the margin already separates (zero triplet loss) are dropped, so
    that a mean over the mined triplets is the mean over the active ones.

    Formula: ``keep (a, p, n) if d(a, p) - d(a, n) + margin > 0`` (every triplet when ``margin`` is None).

    Args:
        margin: keep only triplets with a non-zero triplet loss for this margin; ``None`` keeps all.
        distance: euclidean on L2-normalised embeddings by default, as pytorch-metric-learning.

    Inputs:
        Labelled rows; returns :class:`TripletIndices`.

    Requirements:
        At least two samples of some class per batch; the number of triplets grows as B^3, so
        keep batches moderate (a few hundred rows).

    Conventions:
        pytorch-metric-learning has no BatchAllMiner; its TripletMarginMiner(type_of_triplets="all")
        keeps ``d(a, n) - d(a, p) <= margin`` (ties included), this miner only ``< margin``.

    References:
        Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for Person Re-Identification", 2017.

    Example:
        >>> import torch
        >>> miner = BatchAllMiner()
        >>> len(miner(torch.randn(4, 3), torch.tensor([0, 0, 1, 1])))  # 4 anchors x 1 positive x 2 negatives
        8
    """

    citation = """@article{hermans2017defense,
  title={In Defense of the Triplet Loss for Person Re-Identification},
  author={Hermans, Alexander and Beyer, Lucas and Leibe, Bastian},
  journal={arXiv preprint arXiv:1703.07737},
  year={2017}
}"""

    def __init__(self, margin: float | None = None, distance: BaseDistance | str | None = None):
        super().__init__(as_distance(distance, LpDistance()))
        self.margin = margin

    def mine(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
    ) -> TripletIndices:
        triplets = all_triplets(labels, None if same_set else ref_labels)
        if self.margin is None:
            return triplets
        mat = self.distance(embeddings, ref_embeddings)  # (N, M)
        return select_triplets(triplets, triplet_margins(mat, triplets, self.distance) < self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
