from __future__ import annotations

from typing import ClassVar

import torch

from textdml.distances import BaseDistance, CosineSimilarityDistance, as_distance
from textdml.indices import TupleIndices
from textdml.losses.base import BaseLoss
from textdml.losses.needs import LossNeeds
from textdml.losses.ops import mined_pair_masks
from textdml.registry import LOSSES


@LOSSES.register("threshold_consistent_margin")
class ThresholdConsistentMarginLoss(BaseLoss):
    """Threshold-consistent margin (TCM) loss of Zhang et al.: penalise only the pairs past a margin.

    Positive pairs less similar than ``margin_plus`` and negative pairs more similar than
    ``margin_minus`` pay by how far they are past it, each side averaged over the pairs that pay.
    The paper adds it to a base loss (e.g. with ``multiple_losses``) so that one similarity
    threshold works across classes; it trains alone too.

    Formula: ``L = lambda_plus * mean_{s_p <= m+} (m+ - s_p) + lambda_minus * mean_{s_n >= m-} (s_n - m-)``.

    Args:
        lambda_plus: weight of the positive term.
        lambda_minus: weight of the negative term.
        margin_plus: positive pairs at least this similar cost nothing.
        margin_minus: negative pairs at most this similar cost nothing.
        distance: cosine similarity (the only one the margins are defined on).

    Inputs:
        Labelled rows (every pair in the batch), pairs or triplets (pairs from their labels), or
        the tuples of a miner.

    Requirements:
        Several samples per class in a batch (an m-per-class sampler) for the positive term.

    Conventions:
        Equals pytorch-metric-learning's ``ThresholdConsistentMarginLoss`` without a reference set.
        With ``ref_embeddings`` the positives and negatives are reference rows; PML 2.9.0 reads
        them from ``embeddings`` instead (wrong rows, or an index error when the reference set is
        larger). Across devices each device averages over its own paying pairs (a per-device
        mean, as ``mean_nonzero`` losses; see ``textdml.distributed``).

    References:
        Zhang et al., "Threshold-Consistent Margin Loss for Open-World Deep Metric Learning",
        ICLR 2024 (arXiv:2307.04047).

    Example:
        >>> import torch
        >>> loss = ThresholdConsistentMarginLoss()
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(input_kinds=("pairs", "triplets", "labelled"), accepts_indices=True)
    citation = """@inproceedings{zhang2024threshold,
  title={Threshold-Consistent Margin Loss for Open-World Deep Metric Learning},
  author={Zhang, Qin and Xiang, Linghan and Xu, Chao and Gu, Xiaoyu and others},
  booktitle={ICLR},
  year={2024}
}"""

    def __init__(
        self,
        lambda_plus: float = 1.0,
        lambda_minus: float = 1.0,
        margin_plus: float = 0.9,
        margin_minus: float = 0.5,
        distance: BaseDistance | str | None = None,
    ):
        super().__init__()
        self.distance = as_distance(distance, CosineSimilarityDistance())
        if not isinstance(self.distance, CosineSimilarityDistance):
            raise ValueError(
                f"ThresholdConsistentMarginLoss: the margins are cosine similarities; distance must be "
                f"'cosine_similarity', got {type(self.distance).__name__}"
            )
        self.lambda_plus = lambda_plus
        self.lambda_minus = lambda_minus
        self.margin_plus = margin_plus
        self.margin_minus = margin_minus

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
        if not (positive.any() or negative.any()):
            return self.empty_loss(embeddings, "the batch has no pair")
        sim = self.distance(embeddings, None if same_set else ref_embeddings)  # (N, M)
        # Pairs at the margin count (<=, >=) with a zero term, as in the paper's indicator.
        pos_paying = positive & (sim <= self.margin_plus)
        neg_paying = negative & (sim >= self.margin_minus)
        pos_term = torch.where(pos_paying, self.margin_plus - sim, 0.0).sum() / pos_paying.sum().clamp_min(1)
        neg_term = torch.where(neg_paying, sim - self.margin_minus, 0.0).sum() / neg_paying.sum().clamp_min(1)
        return self.lambda_plus * pos_term + self.lambda_minus * neg_term

    def extra_repr(self) -> str:
        return (f"lambda_plus={self.lambda_plus}, lambda_minus={self.lambda_minus}, "
                f"margin_plus={self.margin_plus}, margin_minus={self.margin_minus}")
