from __future__ import annotations

import math
from typing import ClassVar

import torch

from textdml.distances import CosineSimilarityDistance
from textdml.indices import TupleIndices, to_pairs
from textdml.losses.base import BaseLoss
from textdml.losses.needs import LossNeeds
from textdml.losses.ops import log1p_sum_exp
from textdml.registry import LOSSES


@LOSSES.register("angular")
class AngularLoss(BaseLoss):
    """Angular loss of Wang et al., in its N-pair form: bound the angle at the negative.

    For a positive pair (a, p) and a negative n, the triangle's angle at n must stay below
    ``alpha``: n must be far from the centre of (a, p) relative to how far a and p are apart.
    A constraint on an angle is scale invariant and involves all three points, unlike a distance
    margin. Every negative of the anchor's class enters one softplus, as in the N-pair loss.

    Formula: ``L = log(1 + sum_n exp(4 tan^2(alpha) (x_a + x_p)^T x_n - 2 (1 + tan^2(alpha)) x_a^T x_p))``.

    Args:
        alpha: the largest allowed angle at the negative, in degrees (36 to 55 in the paper).

    Inputs:
        Labelled rows, pairs or triplets. A miner picks the (anchor, positive) pairs; every row
        of another class than the anchor is a negative (the N-pair form).

    Requirements:
        At least two samples of some class per batch.

    Conventions:
        All embeddings are L2-normalised, as the paper. pytorch-metric-learning normalises the
        anchors and positives but uses the reference (negative) rows unnormalised, so the two
        agree on normalised inputs only.

    References:
        Wang, Zhou, Wen, Liu, Lin, "Deep Metric Learning with Angular Loss", ICCV 2017.

    Example:
        >>> import torch
        >>> loss = AngularLoss(alpha=40)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(accepts_indices=True)
    citation = """@inproceedings{wang2017deep,
  title={Deep Metric Learning with Angular Loss},
  author={Wang, Jian and Zhou, Feng and Wen, Shilei and Liu, Xiao and Lin, Yuanqing},
  booktitle={ICCV},
  year={2017}
}"""

    def __init__(self, alpha: float = 40.0):
        super().__init__()
        if not 0 < alpha < 90:
            raise ValueError(f"alpha must be an angle in (0, 90) degrees, got {alpha}")
        self.alpha = alpha
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
        negative = labels[:, None] != ref_labels[None, :]  # (N, M)
        anchor, positive = pairs.anchor_pos, pairs.positive
        if len(anchor) == 0 or not negative[anchor].any():
            return self.empty_loss(embeddings, "the batch needs a positive pair and a negative")
        sim = self.distance(embeddings, None if same_set else ref_embeddings)  # (N, M)
        # Each positive (a reference row) against every reference row: (P, M).
        positive_sim = sim[positive] if same_set else self.distance(ref_embeddings[positive], ref_embeddings)
        sq_tan = math.tan(math.radians(self.alpha)) ** 2
        centre_to_negative = sim[anchor] + positive_sim  # (P, M): (x_a + x_p)^T x_n
        anchor_to_positive = sim[anchor, positive][:, None]  # (P, 1)
        logits = 4 * sq_tan * centre_to_negative - 2 * (1 + sq_tan) * anchor_to_positive
        return log1p_sum_exp(logits, negative[anchor]).mean()
