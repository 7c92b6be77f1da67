from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from textdml.distances import LpDistance
from textdml.indices import TripletIndices, all_triplets
from textdml.miners.base import BaseMiner
from textdml.miners.triplet_margin import select_triplets
from textdml.registry import MINERS


@MINERS.register("angular")
class AngularMiner(BaseMiner):
    """Keeps the triplets whose angle at the negative exceeds a threshold (Wang et al., angular loss).

    The angle of a triplet is the one at the negative ``n`` in the triangle formed by ``n`` and
    the anchor-positive pair seen from its centre ``c = (a + p) / 2``. A wide angle means the
    negative sits close to the pair relative to the pair's own spread: a triplet the angular
    loss still learns from.

    Formula: ``keep (a, p, n) if atan(||a - p|| / (2 ||n - c||)) > angle``.

    Args:
        angle: the threshold, in degrees.

    Inputs:
        Labelled rows; returns :class:`TripletIndices`.

    Requirements:
        Defined on L2-normalised euclidean embeddings (the distance is fixed to that).

    Conventions:
        The angle is measured between L2-normalised embeddings, as the angular loss sees them.
        pytorch-metric-learning's AngularMiner measures it on the raw embeddings (its distance's
        normalisation is skipped by ``pairwise_distance``), so the two select the same triplets
        for unit-norm embeddings only. ``||n - c||`` is computed from inner products (no
        (triplets, D) tensor), so triplets within ~1e-6 of the threshold may be decided differently.

    References:
        Wang, Zhou, Wen, Liu, Lin, "Deep Metric Learning with Angular Loss", ICCV 2017.

    Example:
        >>> import torch
        >>> miner = AngularMiner(angle=20)
        >>> triplets = miner(torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
        >>> bool((triplets.anchor != triplets.positive).all())
        True
    """

    citation = """@inproceedings{wang2017deep,
  title={Deep Metric Learning with Angular Loss},
  author={Wang, Jian and Zhou, Feng and Wen, Shilei and Liu, Xiao and Lin, Yuanqing},
  booktitle={ICCV},
  year={2017}
}"""

    def __init__(self, angle: float = 20.0):
        super().__init__(LpDistance(p=2, squared=False, normalize_embeddings=True))
        self.angle = angle

    def mine(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
    ) -> TripletIndices:
        triplets = all_triplets(labels, None if same_set else ref_labels)
        a, p, n = triplets.anchor, triplets.positive, triplets.negative
        emb, ref = F.normalize(embeddings, dim=-1), F.normalize(ref_embeddings, dim=-1)
        anchor_ref = emb @ ref.T  # (N, M) inner products
        ref_ref = ref @ ref.T  # (M, M)
        ap_dist = (2 - 2 * anchor_ref[a, p]).clamp_min(0).sqrt()
        # ||n - (a + p) / 2||^2 for unit vectors, expanded so only inner products are gathered.
        nc_sq = 1.5 - anchor_ref[a, n] - ref_ref[p, n] + 0.5 * anchor_ref[a, p]
        angles = torch.atan(ap_dist / (2 * nc_sq.clamp_min(0).sqrt()))
        return select_triplets(triplets, angles > math.radians(self.angle))

    def extra_repr(self) -> str:
        return f"angle={self.angle}"
