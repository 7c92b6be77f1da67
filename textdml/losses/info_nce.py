from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from textdml.distances import BaseDistance, CosineSimilarityDistance, as_distance
from textdml.indices import TupleIndices
from textdml.losses.base import BaseLoss
from textdml.losses.needs import LossNeeds
from textdml.registry import LOSSES


def multi_positive_cross_entropy(logits: torch.Tensor, positive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ``-log(sum_pos exp(logit) / sum_all exp(logit))`` and the mask of rows with a positive.

    With exactly one positive per row this is plain cross-entropy. ``logits`` hold ``-inf`` where
    an entry is excluded (a row against itself).
    """
    has_positive = positive.any(dim=1)
    pos_logits = logits.masked_fill(~positive, float("-inf"))
    losses = torch.logsumexp(logits, dim=1) - torch.logsumexp(pos_logits, dim=1)
    return losses[has_positive], has_positive


@LOSSES.register("info_nce")
class InfoNCELoss(BaseLoss):
    """InfoNCE with in-batch negatives (sentence-transformers' MultipleNegativesRankingLoss).

    Each anchor must pick its positive out of every reference in the batch: the other anchors'
    positives and every hard negative are its negatives, so a batch of B pairs gives each anchor
    B - 1 free negatives. An anchor with several positives (same label) uses all of them in the
    numerator (multi-positive InfoNCE), which is also how duplicate texts stop acting as negatives.

    Formula: ``L = -log( sum_{p in P(i)} exp(s(a_i, p) / t) / sum_j exp(s(a_i, r_j) / t) )``.

    Args:
        temperature: softmax temperature ``t`` (0.05 equals sentence-transformers' ``scale=20``).
        distance: the similarity (cosine by default; ``dot_product`` for unnormalised inner
            products; a distance such as ``lp`` is negated).
        symmetric: also add the reference-to-anchor term (each positive picks its anchor among
            all anchors) and average the two, as MultipleNegativesSymmetricRankingLoss.

    Inputs:
        Pairs ``(anchor, positive)`` and optional hard negatives: ``embeddings`` are the anchors,
        ``ref_embeddings`` the positives followed by the negatives, ``labels=None`` (rows pair by
        position). Or labelled rows with ``ref_embeddings`` from another view.

    Requirements:
        Larger batches give more negatives; use a no-duplicates sampler so that a repeated
        positive does not appear as a negative.

    References:
        van den Oord et al., "Representation Learning with Contrastive Predictive Coding", 2018.
        Henderson et al., "Efficient Natural Language Response Suggestion for Smart Reply", 2017.

    Example:
        >>> import torch
        >>> loss = InfoNCELoss(temperature=0.05)
        >>> anchors, positives = torch.randn(4, 8), torch.randn(4, 8)
        >>> loss(anchors, ref_embeddings=positives).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(input_kinds=("pairs", "triplets"))
    citation = """@article{oord2018representation,
  title={Representation Learning with Contrastive Predictive Coding},
  author={van den Oord, Aaron and Li, Yazhe and Vinyals, Oriol},
  journal={arXiv preprint arXiv:1807.03748},
  year={2018}
}"""

    def __init__(
        self,
        temperature: float = 0.05,
        distance: BaseDistance | str | None = None,
        symmetric: bool = False,
    ):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.distance = as_distance(distance, CosineSimilarityDistance())
        self.needs = dataclasses.replace(self.needs, symmetric=symmetric)

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
        if not self.distance.higher_is_closer:
            sim = -sim
        logits = sim / self.temperature
        positive = labels[:, None] == ref_labels[None, :]  # (N, M)
        negative = ~positive
        if same_set:
            eye = torch.eye(len(labels), dtype=torch.bool, device=logits.device)
            logits = logits.masked_fill(eye, float("-inf"))
            positive = positive & ~eye
        if not negative.any():
            return self.empty_loss(embeddings, "every candidate is a positive (one class): there is no negative")
        losses, _ = multi_positive_cross_entropy(logits, positive)
        if losses.numel() == 0:
            return self.empty_loss(embeddings, "no anchor has a positive in the batch")
        loss = losses.mean()
        if self.needs.symmetric:
            backward, _ = multi_positive_cross_entropy(logits.T, positive.T)
            if backward.numel() > 0:
                loss = (loss + backward.mean()) / 2
        return loss
