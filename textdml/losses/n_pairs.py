from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from textdml.distances import BaseDistance, DotProductDistance, as_distance
from textdml.indices import TupleIndices, label_masks, to_pairs
from textdml.losses.base import BaseLoss
from textdml.losses.needs import LossNeeds
from textdml.registry import LOSSES


def positive_pairs(
    indices: TupleIndices | None, labels: torch.Tensor, ref_labels: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(anchor, positive)`` of the mined positive pairs, or of every positive pair in the batch."""
    if indices is None:
        # Straight from the label mask: listing the (far more numerous) negative pairs is wasted here.
        return torch.where(label_masks(labels, ref_labels)[0])
    pairs = to_pairs(indices, labels, ref_labels)
    return pairs.anchor_pos, pairs.positive


def first_pair_per_label(
    anchor: torch.Tensor, positive: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(anchors, positives)``: the first positive pair of each anchor label, in label order."""
    unique_labels, label_slot = torch.unique(labels[anchor], return_inverse=True)
    order = torch.arange(len(anchor), device=anchor.device)
    first = torch.full((len(unique_labels),), len(anchor), device=anchor.device)
    first = first.scatter_reduce(0, label_slot, order, reduce="amin")
    return anchor[first], positive[first]


@LOSSES.register("n_pairs")
class NPairsLoss(BaseLoss):
    """Multi-class N-pair loss of Sohn: one pair per class, every other class's positive is a negative.

    From each class in the batch one (anchor, positive) pair is taken; each anchor must pick its
    own positive among the positives of all N classes, a softmax over N - 1 negatives at the cost
    of 2N embeddings (a triplet loss would see one negative per anchor). Reference rows of a class
    no anchor has (hard negatives of a triplet dataset) join every anchor's candidates.

    Formula: ``L = -log( exp(s(a_i, p_i) / t) / sum_j exp(s(a_i, p_j) / t) ) + l2_reg * mean ||f||^2``.

    Args:
        temperature: softmax temperature ``t`` (1 in the paper).
        distance: the similarity; raw inner product by default, as the paper (a distance is
            negated).
        l2_reg: weight of the mean squared norm of the selected anchors and positives, which the
            paper adds to keep unnormalised embeddings from growing (0.002 as TensorFlow's
            ``npairs_loss``).

    Inputs:
        Labelled rows; pairs (``labels=None`` with ``ref_embeddings``); triplets (anchors against
        positives followed by negatives). A miner's pairs are used the same way: the first
        positive pair of each label.

    Requirements:
        At least two classes with two samples each; an m-per-class sampler with m = 2 is the
        paper's setting.

    Conventions:
        pytorch-metric-learning's NPairsLoss uses DotProductSimilarity, which normalises by
        default: it equals this loss with ``distance="cosine_similarity"`` and ``l2_reg=0``.
        pytorch-metric-learning takes no ``ref_embeddings``.

    References:
        Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss Objective", NeurIPS 2016.

    Example:
        >>> import torch
        >>> loss = NPairsLoss()
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(accepts_indices=True)
    citation = """@inproceedings{sohn2016improved,
  title={Improved Deep Metric Learning with Multi-class N-pair Loss Objective},
  author={Sohn, Kihyuk},
  booktitle={NeurIPS},
  year={2016}
}"""

    def __init__(self, temperature: float = 1.0, distance: BaseDistance | str | None = None, l2_reg: float = 0.002):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.distance = as_distance(distance, DotProductDistance())
        self.l2_reg = l2_reg

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
        indices: TupleIndices | None,
    ) -> torch.Tensor:
        anchor, positive = positive_pairs(indices, labels, None if same_set else ref_labels)
        if len(anchor) == 0:
            return self.empty_loss(embeddings, "the batch has no positive pair")
        anchor, positive = first_pair_per_label(anchor, positive, labels)
        candidates = ref_embeddings[positive]  # (K, D)
        if not same_set:
            # Rows whose label no anchor has can only be negatives (hard negatives of a triplet).
            candidates = torch.cat([candidates, ref_embeddings[~torch.isin(ref_labels, labels)]])  # (K + E, D)
        if len(candidates) < 2:
            return self.empty_loss(embeddings, "one pair and no negative: N-pairs needs two classes")
        anchors = embeddings[anchor]  # (K, D)
        sim = self.distance(anchors, candidates)  # (K, K + E)
        logits = (sim if self.distance.higher_is_closer else -sim) / self.temperature
        targets = torch.arange(len(anchors), device=logits.device)
        loss = F.cross_entropy(logits, targets)
        if self.l2_reg:
            squared_norms = torch.cat([anchors, ref_embeddings[positive]]).pow(2).sum(dim=1)
            loss = loss + self.l2_reg * squared_norms.mean()
        return loss
