"""Index types shared by miners, losses and the training code, and the helpers that build them from labels.

Indices always point at rows of ``embeddings`` (the anchor side) and rows of the reference set,
which is ``ref_embeddings`` when given and ``embeddings`` itself otherwise. Without a reference
set a row is never paired with itself. Kept apart from ``textdml.miners`` so that losses, the
distributed gather and diagnostics read them without importing the miners.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PairIndices:
    """Positive pairs ``(anchor_pos[k], positive[k])`` and negative pairs ``(anchor_neg[k], negative[k])``."""

    anchor_pos: torch.Tensor
    positive: torch.Tensor
    anchor_neg: torch.Tensor
    negative: torch.Tensor

    def __len__(self) -> int:
        return len(self.anchor_pos) + len(self.anchor_neg)


@dataclass(frozen=True)
class TripletIndices:
    """Triplets ``(anchor[k], positive[k], negative[k])``."""

    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor

    def __len__(self) -> int:
        return len(self.anchor)


TupleIndices = PairIndices | TripletIndices


def label_masks(
    labels: torch.Tensor, ref_labels: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean (N, M) masks of positive and negative pairs; without ``ref_labels`` the diagonal is excluded."""
    same_set = ref_labels is None
    ref_labels = labels if ref_labels is None else ref_labels
    same = labels[:, None] == ref_labels[None, :]
    positive, negative = same.clone(), ~same
    if same_set:
        positive.fill_diagonal_(False)
    return positive, negative


def all_pairs(labels: torch.Tensor, ref_labels: torch.Tensor | None = None) -> PairIndices:
    """Every positive and negative pair in the batch."""
    positive, negative = label_masks(labels, ref_labels)
    a1, p = torch.where(positive)
    a2, n = torch.where(negative)
    return PairIndices(a1, p, a2, n)


def all_triplets(labels: torch.Tensor, ref_labels: torch.Tensor | None = None) -> TripletIndices:
    """Every valid (anchor, positive, negative) triplet in the batch, ordered by (a, p, n).

    Built from the positive pairs and each anchor's list of negatives, so the cost is linear in
    the number of triplets instead of a scan of an (N, M, M) mask.
    """
    positive, negative = label_masks(labels, ref_labels)
    anchors, positives = torch.where(positive)  # (P,) each, sorted by anchor
    negative_columns = torch.where(negative)[1]  # every anchor's negatives, anchor by anchor
    counts = negative.sum(dim=1)  # (N,) negatives per anchor
    starts = torch.cumsum(counts, 0) - counts  # where each anchor's negatives begin
    per_pair = counts[anchors]  # (P,) triplets each positive pair makes
    pair = torch.repeat_interleave(torch.arange(len(anchors), device=labels.device), per_pair)  # (T,)
    first_of_pair = torch.repeat_interleave(torch.cumsum(per_pair, 0) - per_pair, per_pair)
    within = torch.arange(len(pair), device=labels.device) - first_of_pair  # 0..count-1 per pair
    negatives = negative_columns[starts[anchors[pair]] + within]
    return TripletIndices(anchors[pair], positives[pair], negatives)


def to_pairs(indices: TupleIndices | None, labels: torch.Tensor, ref_labels: torch.Tensor | None) -> PairIndices:
    """Pairs from any miner output (``None`` means every pair in the batch)."""
    if indices is None:
        return all_pairs(labels, ref_labels)
    if isinstance(indices, PairIndices):
        return indices
    # A triplet holds one positive and one negative pair; repeated pairs are kept once.
    pos = torch.unique(torch.stack([indices.anchor, indices.positive]), dim=1)
    neg = torch.unique(torch.stack([indices.anchor, indices.negative]), dim=1)
    return PairIndices(pos[0], pos[1], neg[0], neg[1])


def to_triplets(
    indices: TupleIndices | None, labels: torch.Tensor, ref_labels: torch.Tensor | None
) -> TripletIndices:
    """Triplets from any miner output (``None`` means every triplet in the batch)."""
    if indices is None:
        return all_triplets(labels, ref_labels)
    if isinstance(indices, TripletIndices):
        return indices
    # Join positive and negative pairs that share an anchor.
    match = indices.anchor_pos[:, None] == indices.anchor_neg[None, :]  # (P, Q)
    pos_k, neg_k = torch.where(match)
    return TripletIndices(indices.anchor_pos[pos_k], indices.positive[pos_k], indices.negative[neg_k])
