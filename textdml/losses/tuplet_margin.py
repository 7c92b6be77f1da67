from __future__ import annotations

import math
from typing import ClassVar

import torch

from textdml.distances import CosineSimilarityDistance
from textdml.indices import TupleIndices, to_pairs
from textdml.losses.base import BaseLoss
from textdml.losses.needs import LossNeeds
from textdml.losses.ops import log1p_sum_exp, pair_masks
from textdml.registry import LOSSES


@LOSSES.register("tuplet_margin")
class TupletMarginLoss(BaseLoss):
    """Tuplet margin loss of Yu and Tao: a scaled N-pair softmax with an angular margin on the positive.

    Each positive pair competes with all negatives of its anchor in a softmax of scaled cosine
    similarities. The positive's angle is first shrunk by ``margin`` degrees, which asks less of
    pairs that are already close: it slows the collapse of each class to a point and keeps some
    intra-class variance, which the paper finds generalises better.

    Formula: ``L = log(1 + sum_{n in N(a)} exp(scale * (cos(theta_an) - cos(theta_ap - margin))))``.

    Args:
        margin: angular margin in degrees (5.73 degrees = 0.1 radian, as the paper).
        scale: the softmax scale ``s`` (inverse temperature).
        eps: cosines are clipped to ``[-1 + eps, 1 - eps]`` before ``acos``, whose gradient is
            infinite at +-1 (a positive pair that coincides).

    Inputs:
        Labelled rows, pairs or triplets; or a miner's pairs (each positive pair then competes
        with the mined negatives of its anchor).

    Requirements:
        At least two samples of some class per batch (an m-per-class sampler); the paper pairs it
        with a hard triplet miner (``triplet_margin`` with ``type_of_triplets="semihard"``).

    Conventions:
        Always on cosine similarity, as pytorch-metric-learning (which requires CosineSimilarity).
        A mined pair listed twice counts once.

    References:
        Yu and Tao, "Deep Metric Learning with Tuplet Margin Loss", ICCV 2019.

    Example:
        >>> import torch
        >>> loss = TupletMarginLoss(margin=5.73, scale=64)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(accepts_indices=True)
    citation = """@inproceedings{yu2019deep,
  title={Deep Metric Learning with Tuplet Margin Loss},
  author={Yu, Baosheng and Tao, Dacheng},
  booktitle={ICCV},
  year={2019}
}"""

    def __init__(self, margin: float = 5.73, scale: float = 64.0, eps: float = 1e-7):
        super().__init__()
        self.margin = margin
        self.scale = scale
        self.eps = eps
        self.distance = CosineSimilarityDistance()

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
        if len(pairs.anchor_pos) == 0 or len(pairs.anchor_neg) == 0:
            return self.empty_loss(embeddings, "the batch needs a positive and a negative pair")
        sim = self.distance(embeddings, None if same_set else ref_embeddings)  # (N, M)
        _, negative = pair_masks(pairs, sim.shape, sim.device)
        pos_cos = sim[pairs.anchor_pos, pairs.positive].clamp(-1 + self.eps, 1 - self.eps)  # (P,)
        pos_with_margin = torch.cos(torch.acos(pos_cos) - math.radians(self.margin))  # (P,)
        # Row k holds the anchor's negatives against positive pair k.
        logits = self.scale * (sim[pairs.anchor_pos] - pos_with_margin[:, None])  # (P, M)
        return log1p_sum_exp(logits, negative[pairs.anchor_pos]).mean()
