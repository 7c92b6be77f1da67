from __future__ import annotations

from typing import ClassVar

import torch

from textdml.distances import BaseDistance, CosineSimilarityDistance, as_distance
from textdml.indices import TupleIndices
from textdml.losses.base import BaseLoss, Reduction, reduce_losses
from textdml.losses.needs import LossNeeds
from textdml.losses.ops import masked_logsumexp, mined_pair_masks
from textdml.registry import LOSSES


@LOSSES.register("supervised_contrastive")
class SupervisedContrastiveLoss(BaseLoss):
    """Supervised contrastive loss (SupCon) of Khosla et al.

    Each anchor spreads one softmax over every other row (its positives and its negatives) and
    the loss is the average negative log-probability of its positives: all samples of the class
    are pulled together at once, against every other class in the batch.

    Formula: ``L_i = -1/|P(i)| * sum_{p in P(i)} log( exp(s_ip / t) / sum_{a in P(i) + N(i)} exp(s_ia / t) )``.

    Args:
        temperature: softmax temperature ``t`` (0.1 as pytorch-metric-learning and the paper).
        distance: cosine similarity by default; a distance (``lp``) is negated.
        reduction: over the anchors that have a positive: ``mean_nonzero`` (pytorch-metric-
            learning's AvgNonZeroReducer), ``mean`` (the paper), ``sum`` or ``none``.

    Inputs:
        Labelled rows (several views or samples per class), the batch compared with itself or
        with ``ref_embeddings`` (other views); pairs (the pair labels); or a miner's tuples.

    Requirements:
        At least two samples of a class in a batch (an m-per-class sampler) and two classes.

    Conventions:
        This is the paper's ``L_out`` (the mean over positives outside the log). With one
        positive per anchor it equals :class:`NTXentLoss` and :class:`InfoNCELoss`.

    References:
        Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.
        Code: https://github.com/HobbitLong/SupContrast

    Example:
        >>> import torch
        >>> loss = SupervisedContrastiveLoss(temperature=0.1)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(input_kinds=("pairs", "triplets", "labelled"), accepts_indices=True)
    citation = """@inproceedings{khosla2020supervised,
  title={Supervised Contrastive Learning},
  author={Khosla, Prannay and Teterwak, Piotr and Wang, Chen and Sarna, Aaron and Tian, Yonglong and Isola, Phillip and Maschinot, Aaron and Liu, Ce and Krishnan, Dilip},
  booktitle={NeurIPS},
  year={2020}
}"""

    def __init__(
        self,
        temperature: float = 0.1,
        distance: BaseDistance | str | None = None,
        reduction: Reduction = "mean_nonzero",
    ):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.distance = as_distance(distance, CosineSimilarityDistance())
        self.reduction = reduction

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
        indices: TupleIndices | None,
    ) -> torch.Tensor:
        shape = (len(embeddings), len(ref_embeddings))
        positive, negative = mined_pair_masks(indices, labels, None if same_set else ref_labels, shape)
        if not positive.any():
            return self.empty_loss(embeddings, "the batch has no positive pair")
        if not negative.any():
            return self.empty_loss(embeddings, "the batch has no negative pair")
        values = self.distance(embeddings, None if same_set else ref_embeddings)  # (N, M)
        logits = (values if self.distance.higher_is_closer else -values) / self.temperature
        log_prob = logits - masked_logsumexp(logits, positive | negative)[:, None]  # (N, M)
        # masked_fill, not a product: log_prob is +inf on rows that have no pair at all.
        pos_log_prob_sum = log_prob.masked_fill(~positive, 0.0).sum(dim=1)
        pos_count = positive.sum(dim=1)
        has_positive = pos_count > 0
        losses = -pos_log_prob_sum[has_positive] / pos_count[has_positive]
        return reduce_losses(losses, self.reduction, embeddings)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}"
