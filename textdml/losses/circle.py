from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from textdml.distances import CosineSimilarityDistance
from textdml.indices import TupleIndices
from textdml.losses.base import BaseLoss, Reduction, reduce_losses
from textdml.losses.needs import LossNeeds
from textdml.losses.ops import masked_logsumexp, mined_pair_masks
from textdml.registry import LOSSES


@LOSSES.register("circle")
class CircleLoss(BaseLoss):
    """Circle loss of Sun et al.: every similarity is weighted by how far it is from its optimum.

    A softplus over all (negative, positive) similarity gaps of an anchor, where each similarity
    gets its own weight: a positive far below its optimum ``1 + m`` or a negative far above
    ``-m`` is pushed harder. The decision boundary becomes a circle in the (s_n, s_p) plane,
    which makes the optimisation target definite. The weights are not differentiated (stop
    gradient), as the paper's code.

    Formula: ``L = softplus( logsumexp_n(gamma a_n (s_n - m)) + logsumexp_p(-gamma a_p (s_p - 1 + m)) )`` with ``a_p = relu(1 + m - s_p)``, ``a_n = relu(s_n + m)``.

    Args:
        m: the relaxation margin (0.25 for face recognition, 0.4 for fine-grained retrieval).
        gamma: the scale (256 for faces, 80 for fine-grained retrieval).
        reduction: ``mean_nonzero`` over anchors (pytorch-metric-learning's AvgNonZeroReducer),
            ``mean``, ``sum`` or ``none``.

    Inputs:
        Labelled rows, pairs or triplets; or a miner's pairs.

    Requirements:
        At least two samples of some class per batch (an m-per-class sampler). Anchors without a
        positive or a negative are skipped.

    Conventions:
        Always on cosine similarity, as pytorch-metric-learning. The weights' stop gradient makes
        ``gradcheck`` against finite differences inapplicable; the gradient matches the paper's.

    References:
        Sun, Cheng, Zhang, Zhang, Zheng, Wang, Wei, "Circle Loss: A Unified Perspective of Pair
        Similarity Optimization", CVPR 2020.

    Example:
        >>> import torch
        >>> loss = CircleLoss(m=0.4, gamma=80)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(accepts_indices=True)
    citation = """@inproceedings{sun2020circle,
  title={Circle Loss: A Unified Perspective of Pair Similarity Optimization},
  author={Sun, Yifan and Cheng, Changmao and Zhang, Yuhan and Zhang, Chi and Zheng, Liang and Wang, Zhongdao and Wei, Yichen},
  booktitle={CVPR},
  year={2020}
}"""

    def __init__(self, m: float = 0.4, gamma: float = 80.0, reduction: Reduction = "mean_nonzero"):
        super().__init__()
        self.m = m
        self.gamma = gamma
        self.reduction = reduction
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
        sim = self.distance(embeddings, None if same_set else ref_embeddings)  # (N, M)
        positive, negative = mined_pair_masks(indices, labels, None if same_set else ref_labels, sim.shape)
        valid = positive.any(dim=1) & negative.any(dim=1)  # (N,)
        if not valid.any():
            return self.empty_loss(embeddings, "no anchor has both a positive and a negative")
        if not valid.all():  # (usually every row is valid: no copy of the (N, M) matrices then)
            sim, positive, negative = sim[valid], positive[valid], negative[valid]
        # The optima are 1 + m (positives) and -m (negatives); the decision margins 1 - m and m.
        pos_weight = (1 + self.m - sim.detach()).clamp_min(0)
        neg_weight = (sim.detach() + self.m).clamp_min(0)
        pos_logits = -self.gamma * pos_weight * (sim - (1 - self.m))
        neg_logits = self.gamma * neg_weight * (sim - self.m)
        losses = F.softplus(masked_logsumexp(pos_logits, positive) + masked_logsumexp(neg_logits, negative))
        return reduce_losses(losses, self.reduction, embeddings)
