from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from textdml.distances import BaseDistance, CosineSimilarityDistance, as_distance
from textdml.indices import TupleIndices, to_pairs
from textdml.losses.base import BaseLoss
from textdml.losses.needs import LossNeeds
from textdml.losses.ops import masked_logsumexp, pair_masks
from textdml.registry import LOSSES


@LOSSES.register("ntxent")
class NTXentLoss(BaseLoss):
    """NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.

    Every positive pair is its own softmax term: the anchor must pick that positive out of itself
    and all of the anchor's negatives. Rows that share a label are views of one item, so two
    augmentations per image (SimCLR) or several paraphrases per sentence both work; the other
    views of the same item are left out of the term rather than counted as negatives.

    Formula: ``L = mean_{(i, p)} -log( exp(s_ip / t) / (exp(s_ip / t) + sum_{n in N(i)} exp(s_in / t)) )``.

    Args:
        temperature: softmax temperature ``t`` (0.07 as pytorch-metric-learning; SimCLR uses
            0.1 to 0.5).
        distance: cosine similarity by default; a distance (``lp``) is negated.

    Inputs:
        Labelled rows where a label marks the views of one item (the whole batch is compared
        with itself), or anchors with ``ref_embeddings`` holding the other views; pairs (the
        pair labels); or the tuples of a miner.

    Requirements:
        At least two views per item in a batch; larger batches give more negatives.

    Conventions:
        With exactly two views per item this equals :class:`InfoNCELoss` on the batch compared
        with itself. With more views the two differ: InfoNCE puts every positive in one
        numerator and averages over anchors; NT-Xent gives each positive pair its own term
        (the other positives are in neither numerator nor denominator) and averages over
        positive pairs, as pytorch-metric-learning's NTXentLoss. Triplets from a miner become
        unique pairs, where pytorch-metric-learning counts a negative once per triplet.

    References:
        Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
        ICML 2020. Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss
        Objective", NeurIPS 2016.

    Example:
        >>> import torch
        >>> loss = NTXentLoss(temperature=0.1)
        >>> views = torch.randn(8, 16)  # 4 items, 2 views each
        >>> loss(views, torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(input_kinds=("pairs", "triplets", "labelled"), accepts_indices=True)
    citation = """@inproceedings{chen2020simple,
  title={A Simple Framework for Contrastive Learning of Visual Representations},
  author={Chen, Ting and Kornblith, Simon and Norouzi, Mohammad and Hinton, Geoffrey},
  booktitle={ICML},
  year={2020}
}"""

    def __init__(self, temperature: float = 0.07, distance: BaseDistance | str | None = None):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.distance = as_distance(distance, CosineSimilarityDistance())

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
        if len(pairs.anchor_pos) == 0:
            return self.empty_loss(embeddings, "the batch has no positive pair")
        if len(pairs.anchor_neg) == 0:
            return self.empty_loss(embeddings, "the batch has no negative pair")
        values = self.distance(embeddings, None if same_set else ref_embeddings)  # (N, M)
        logits = (values if self.distance.higher_is_closer else -values) / self.temperature
        _, negative = pair_masks(pairs, logits.shape, logits.device)
        negatives_lse = masked_logsumexp(logits, negative)  # (N,)
        pos_logits = logits[pairs.anchor_pos, pairs.positive]  # (P,)
        # -log(e^pos / (e^pos + sum e^neg)) = softplus(logsumexp(neg) - pos)
        return F.softplus(negatives_lse[pairs.anchor_pos] - pos_logits).mean()

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
