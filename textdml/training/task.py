"""The task: embedder + miner + loss -> one loss value per batch. The loop never knows which loss runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from textdml.losses.base import BaseLoss
from textdml.miners.base import BaseMiner, PairIndices, TripletIndices


@dataclass
class LossOutput:
    loss: torch.Tensor
    num_examples: int  # rows (pairs, triplets or labelled texts) in the batch


class EmbeddingTask(nn.Module):
    """Turns a collated batch (see ``RoleCollator``) into the loss contract's inputs.

    - labelled rows: ``loss(anchors, labels, indices=miner(...))``
    - pairs / triplets: anchors against ``cat(positives, negatives)`` with text-derived labels;
      explicit triplets are passed as ``indices`` to losses that take tuples (unless a miner picks).
    - pairs with a 0/1 label: anchor i against ref i only, as explicit positive / negative pairs.
    """

    def __init__(self, embedder: nn.Module, loss: BaseLoss, miner: BaseMiner | None = None):
        super().__init__()
        self.embedder = embedder
        self.loss = loss
        self.miner = miner

    def forward(self, batch: dict[str, Any]) -> LossOutput:
        return self.training_step(batch)

    def training_step(self, batch: dict[str, Any]) -> LossOutput:
        anchors = self.embedder(batch["anchor"])  # (B, D)
        size = len(anchors)
        if "positive" not in batch:
            return LossOutput(self.compute(anchors, batch["labels"]), size)
        positives = self.embedder(batch["positive"])  # (B, D)
        if "pair_labels" in batch:
            return LossOutput(self.scored_pairs(anchors, positives, batch["pair_labels"]), size)
        negatives = [self.embedder(features) for features in batch.get("negatives", [])]
        ref = torch.cat([positives, *negatives])  # (B * (1 + k), D)
        explicit = explicit_triplets(size, len(negatives), anchors.device) if negatives else None
        loss = self.compute(anchors, batch["labels"], ref, batch["ref_labels"], explicit)
        return LossOutput(loss, size)

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor, ref: torch.Tensor | None = None,
                ref_labels: torch.Tensor | None = None, explicit: Any = None) -> torch.Tensor:
        indices = None
        if self.miner is not None:
            indices = self.miner(embeddings, labels, ref, ref_labels)
        elif explicit is not None and self.loss.accepts_indices:
            indices = explicit
        return self.loss(embeddings, labels, ref_embeddings=ref, ref_labels=ref_labels, indices=indices)

    def scored_pairs(self, anchors: torch.Tensor, others: torch.Tensor, pair_labels: torch.Tensor) -> torch.Tensor:
        size = len(anchors)
        rows = torch.arange(size, device=anchors.device)
        is_positive = pair_labels.to(anchors.device) > 0.5
        labels = rows
        ref_labels = torch.where(is_positive, rows, rows + size)
        if not self.loss.accepts_indices:
            return self.loss(anchors, labels, ref_embeddings=others, ref_labels=ref_labels)
        pos, neg = rows[is_positive], rows[~is_positive]
        return self.loss(anchors, labels, ref_embeddings=others, ref_labels=ref_labels,
                         indices=PairIndices(pos, pos, neg, neg))


def explicit_triplets(size: int, num_negatives: int, device: torch.device) -> TripletIndices:
    """Row i's triplets: (anchor i, ref row i, ref row (j + 1) * size + i) for each negative slot j."""
    rows = torch.arange(size, device=device)
    return TripletIndices(
        anchor=rows.repeat(num_negatives),
        positive=rows.repeat(num_negatives),
        negative=torch.cat([rows + (j + 1) * size for j in range(num_negatives)]),
    )
