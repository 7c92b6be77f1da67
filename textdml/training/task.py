"""The task: embedder + miner + loss -> one loss value per batch. The loop never knows which loss runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from textdml.data.collator import TokenizedRoles
from textdml.distributed import compute_local_loss, resolve_global_labels
from textdml.losses.base import BaseLoss
from textdml.miners.base import BaseMiner, PairIndices, TripletIndices
from textdml.training.decoder import decoder_for
from textdml.training.grad_cache import cached_backward, split_features
from textdml.training.scores import scored_pairs_loss
from textdml.training.teacher import FrozenTeacher, teacher_for, teacher_loss
from textdml.training.twin import twin_for, twin_loss


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

    Under several processes the anchors of each device meet the reference rows of every device
    (``textdml.distributed.compute_local_loss``), except for losses with ``gathers = False``
    (class-level losses: their parameters already see every device through DDP).
    """

    def __init__(self, embedder: nn.Module, loss: BaseLoss, miner: BaseMiner | None = None,
                 teacher: FrozenTeacher | None = None):
        super().__init__()
        self.embedder = embedder
        self.loss = loss
        self.miner = miner
        # A loss that names a teacher / guide gets it loaded here (frozen, not a submodule).
        self.teacher = teacher if teacher is not None else teacher_for(loss, embedder)
        # A loss that contrasts two copies of the model (contrastive tension) gets a trained twin.
        self.twin = twin_for(loss, embedder)
        # A denoising auto-encoder (TSDAE) gets a decoder tied to the encoder (trained, never saved).
        self.decoder = decoder_for(loss, embedder)

    def prepare_data(self, data: Any, seed: int) -> None:
        """Fit the training data to the loss (score ranges, raw texts for a teacher, input noise)."""
        from textdml.training.loss_data import fit_data_to_loss

        fit_data_to_loss(self.loss, data, seed)

    def forward(self, batch: dict[str, Any] | None = None, *, features: dict[str, torch.Tensor] | None = None):
        """``task(batch)`` -> LossOutput; ``task(features=...)`` -> embeddings (GradCache's mini-batches
        go through here so that DDP sees every forward)."""
        if features is not None:
            return self.embedder(features)
        return self.training_step(batch)

    def training_step(self, batch: dict[str, Any]) -> LossOutput:
        inputs: TokenizedRoles = batch["inputs"]
        if self.twin is not None:
            return LossOutput(twin_loss(self.loss, self.embedder, self.twin, batch), inputs.role_sizes[0])
        embeddings = torch.cat([self.embedder(block) for block in inputs.blocks])
        return LossOutput(self.loss_from_embeddings(batch, embeddings), inputs.role_sizes[0])

    def cached_step(self, batch: dict[str, Any], mini_batch_size: int, embed: Callable | None = None,
                    backward: Callable | None = None, no_sync: Callable | None = None) -> LossOutput:
        """GradCache: the full-batch loss, backpropagated mini-batch by mini-batch (backward included).

        ``embed`` is the (possibly DDP-wrapped) task called with ``features=``.
        """
        if self.twin is not None:
            raise ValueError(f"{type(self.loss).__name__} trains a twin of the model, which GradCache does not "
                             "cover: set training.grad_cache=false")
        inputs: TokenizedRoles = batch["inputs"]
        chunks = [mini for block in inputs.blocks for mini in split_features(block, mini_batch_size)]
        loss = cached_backward(
            lambda features: (embed or self)(features=features), [chunks],
            lambda embeddings: self.loss_from_embeddings(batch, embeddings[0]),
            backward=backward, no_sync=no_sync,
        )
        return LossOutput(loss, inputs.role_sizes[0])

    def loss_from_embeddings(self, batch: dict[str, Any], embeddings: torch.Tensor) -> torch.Tensor:
        """The loss of a batch given the embeddings of all its texts, in block order."""
        roles = batch["inputs"].split(embeddings)
        anchors = roles[0]
        if self.teacher is not None:
            return teacher_loss(self.loss, self.teacher, batch, roles)
        if "teacher_scores" in batch and getattr(self.loss, "takes_teacher_scores", False):
            return self.loss(anchors, ref_embeddings=torch.cat(roles[1:]), teacher_scores=batch["teacher_scores"])
        if self.decoder is not None:
            if "targets" not in batch:
                raise ValueError(f"{type(self.loss).__name__} needs the original sentences as batch['targets']: set "
                                 "the collator's deletion_ratio (the trainer does it from loss.deletion_ratio)")
            return self.loss(anchors, decoder=self.decoder, target_features=batch["targets"],
                             pad_token_id=self.embedder.tokenizer.pad_token_id)
        if len(roles) == 1:
            return self.compute(anchors, batch["labels"])
        if "pair_labels" in batch:
            return self.scored_pairs(anchors, roles[1], batch["pair_labels"])
        if "scores" in batch:
            return scored_pairs_loss(self.loss, anchors, roles[1], batch["scores"])
        ref = torch.cat(roles[1:])  # (B * (1 + k), D)
        num_negatives = len(roles) - 2
        explicit = explicit_triplets(len(anchors), num_negatives, anchors.device) if num_negatives else None
        return self.compute(anchors, batch["labels"], ref, batch["ref_labels"], explicit)

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor, ref: torch.Tensor | None = None,
                ref_labels: torch.Tensor | None = None, explicit: Any = None) -> torch.Tensor:
        labels = labels.to(embeddings.device)
        ref_labels = None if ref_labels is None else ref_labels.to(embeddings.device)
        indices = explicit if self.miner is None and explicit is not None and self.loss.accepts_indices else None
        if not getattr(self.loss, "gathers", True):
            if self.miner is not None:
                indices = self.miner(embeddings, labels, ref, ref_labels)
            return self.loss(embeddings, labels, ref_embeddings=ref, ref_labels=ref_labels, indices=indices)
        return compute_local_loss(self.loss, embeddings, labels, ref, ref_labels, indices=indices, miner=self.miner)

    def scored_pairs(self, anchors: torch.Tensor, others: torch.Tensor, pair_labels: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(len(anchors), device=anchors.device)
        is_positive = pair_labels.to(anchors.device) > 0.5
        # Labels unique across devices; a negative pair's ref gets a label no anchor has.
        labels, _ = resolve_global_labels(anchors, None, others, None)
        ref_labels = torch.where(is_positive, labels, -(labels + 1))
        indices = None
        if self.loss.accepts_indices:
            pos, neg = rows[is_positive], rows[~is_positive]
            indices = PairIndices(pos, pos, neg, neg)
        return compute_local_loss(self.loss, anchors, labels, others, ref_labels, indices=indices)


def explicit_triplets(size: int, num_negatives: int, device: torch.device) -> TripletIndices:
    """Row i's triplets: (anchor i, ref row i, ref row (j + 1) * size + i) for each negative slot j."""
    rows = torch.arange(size, device=device)
    return TripletIndices(
        anchor=rows.repeat(num_negatives),
        positive=rows.repeat(num_negatives),
        negative=torch.cat([rows + (j + 1) * size for j in range(num_negatives)]),
    )
