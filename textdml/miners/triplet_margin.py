from __future__ import annotations

from typing import Literal

import torch

from textdml.distances import BaseDistance, LpDistance, as_distance
from textdml.indices import TripletIndices, all_triplets
from textdml.miners.base import BaseMiner
from textdml.registry import MINERS

TripletType = Literal["all", "hard", "semihard", "easy"]


def triplet_margins(mat: torch.Tensor, triplets: TripletIndices, distance: BaseDistance) -> torch.Tensor:
    """How much closer each triplet's positive is than its negative: ``d(a, n) - d(a, p)`` (> 0 is good)."""
    ap = mat[triplets.anchor, triplets.positive]
    an = mat[triplets.anchor, triplets.negative]
    return distance.margin(ap, an)


def select_triplets(triplets: TripletIndices, keep: torch.Tensor) -> TripletIndices:
    """The triplets where the boolean ``keep`` is True."""
    return TripletIndices(triplets.anchor[keep], triplets.positive[keep], triplets.negative[keep])


@MINERS.register("triplet_margin")
class TripletMarginMiner(BaseMiner):
    """Keeps the triplets whose negative is not at least ``margin`` farther than the positive.

    Every valid (anchor, positive, negative) triplet of the batch is scored by its triplet margin
    ``m = d(a, n) - d(a, p)`` (for similarities ``s(a, p) - s(a, n)``) and filtered by
    ``type_of_triplets``: ``all`` keeps ``m <= margin`` (the triplets a triplet loss with this
    margin learns from), ``hard`` those of them with ``m <= 0`` (the negative is closer than the
    positive), ``semihard`` those with ``0 < m <= margin``, and ``easy`` the rest, ``m > margin``.

    Formula: ``keep (a, p, n) if d(a, n) - d(a, p) <= margin`` (``all``).

    Args:
        margin: the triplet margin the selection is made for.
        type_of_triplets: ``all``, ``hard``, ``semihard`` or ``easy`` (see above).
        distance: euclidean on L2-normalised embeddings by default, as pytorch-metric-learning.

    Inputs:
        Labelled rows; returns :class:`TripletIndices`.

    Requirements:
        At least two samples of some class per batch (an m-per-class sampler).

    Conventions:
        Selects exactly the triplets of pytorch-metric-learning's TripletMarginMiner.

    References:
        Schroff, Kalenichenko, Philbin, "FaceNet: A Unified Embedding for Face Recognition and
        Clustering", CVPR 2015 (semi-hard triplets). Adapted from pytorch-metric-learning.

    Example:
        >>> import torch
        >>> miner = TripletMarginMiner(margin=0.2, type_of_triplets="semihard")
        >>> triplets = miner(torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
        >>> len(triplets.anchor) == len(triplets.positive) == len(triplets.negative)
        True
    """

    citation = """@inproceedings{schroff2015facenet,
  title={FaceNet: A Unified Embedding for Face Recognition and Clustering},
  author={Schroff, Florian and Kalenichenko, Dmitry and Philbin, James},
  booktitle={CVPR},
  year={2015}
}"""

    def __init__(
        self,
        margin: float = 0.2,
        type_of_triplets: TripletType = "all",
        distance: BaseDistance | str | None = None,
    ):
        super().__init__(as_distance(distance, LpDistance()))
        if type_of_triplets not in ("all", "hard", "semihard", "easy"):
            raise ValueError(f"type_of_triplets must be 'all', 'hard', 'semihard' or 'easy', got {type_of_triplets!r}")
        self.margin = margin
        self.type_of_triplets = type_of_triplets

    def mine(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
    ) -> TripletIndices:
        triplets = all_triplets(labels, None if same_set else ref_labels)
        mat = self.distance(embeddings, ref_embeddings)  # (N, M)
        margins = triplet_margins(mat, triplets, self.distance)
        if self.type_of_triplets == "easy":
            keep = margins > self.margin
        else:
            keep = margins <= self.margin
            if self.type_of_triplets == "hard":
                keep &= margins <= 0
            elif self.type_of_triplets == "semihard":
                keep &= margins > 0
        return select_triplets(triplets, keep)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, type_of_triplets={self.type_of_triplets!r}"
