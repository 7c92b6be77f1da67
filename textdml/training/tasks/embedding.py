"""The text task: embedder + miner + loss -> one loss value per batch.

The other text objectives (a frozen teacher, a trained twin, a decoder) are subclasses in
``tasks/teacher.py``, ``tasks/twin.py`` and ``tasks/denoising.py``; each says which needs it
serves, and :func:`text_task_class` picks among them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from textdml.data.collator import TokenizedRoles
from textdml.distributed import compute_local_loss, resolve_global_labels
from textdml.indices import PairIndices, TripletIndices
from textdml.losses.base import BaseLoss
from textdml.losses.needs import LossNeeds, loss_needs
from textdml.miners.base import BaseMiner
from textdml.training.grad_cache import cached_backward, split_features
from textdml.training.tasks.base import LossOutput
from textdml.training.tasks.prepare import check_scores
from textdml.training.tasks.scores import scored_pairs_loss


class EmbeddingTask(nn.Module):
    """Turns a collated batch (see ``RoleCollator``) into the loss contract's inputs.

    - labelled rows: ``loss(anchors, labels, indices=miner(...))``
    - pairs / triplets: anchors against ``cat(positives, negatives)`` with text-derived labels;
      explicit triplets are passed as ``indices`` to losses that take tuples (unless a miner picks).
    - pairs with a 0/1 label: anchor i against ref i only, as explicit positive / negative pairs.

    Under several processes the anchors of each device meet the reference rows of every device
    (``textdml.distributed.compute_local_loss``), except for losses whose needs say
    ``gathers=False`` (class-level losses: their parameters already see every device through DDP).
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> EmbeddingTask:
        # ``EmbeddingTask(model, loss)`` loaded a teacher, a twin or a decoder itself before each
        # objective had a task of its own: it still builds the task of the loss's needs (one release).
        if cls is EmbeddingTask:
            loss = args[1] if len(args) > 1 else kwargs.get("loss")
            teacher = args[3] if len(args) > 3 else kwargs.get("teacher")
            if loss is not None:
                cls = text_task_class(loss_needs(loss), teacher)
        return super().__new__(cls)

    def __init__(self, embedder: nn.Module, loss: BaseLoss, miner: BaseMiner | None = None,
                 teacher: Any = None):
        super().__init__()
        self.embedder = embedder
        self.loss = loss
        self.miner = miner
        self.needs = loss_needs(loss)
        # The second models of the other objectives (set by their tasks; kept as attributes here
        # so that every text task answers ``task.teacher`` / ``task.twin`` / ``task.decoder``).
        self.teacher = teacher
        self.twin: nn.Module | None = None
        self.decoder: nn.Module | None = None

    @classmethod
    def serves(cls, needs: LossNeeds, teacher: Any = None) -> bool:
        """Whether this task is the one for a loss with these needs (the subclasses say)."""
        return False

    def prepare_data(self, data: Any, seed: int) -> None:
        """Fit the training data to the loss before the loader is built (score ranges)."""
        check_scores(self.loss, self.needs, data)

    def forward(self, batch: dict[str, Any] | None = None, *, features: dict[str, torch.Tensor] | None = None):
        """``task(batch)`` -> LossOutput; ``task(features=...)`` -> embeddings (GradCache's mini-batches
        go through here so that DDP sees every forward)."""
        if features is not None:
            return self.embedder(features)
        return self.training_step(batch)

    def training_step(self, batch: dict[str, Any]) -> LossOutput:
        inputs: TokenizedRoles = batch["inputs"]
        embeddings = torch.cat([self.embedder(block) for block in inputs.blocks])
        return LossOutput(self.loss_from_embeddings(batch, embeddings), inputs.role_sizes[0])

    def cached_step(self, batch: dict[str, Any], mini_batch_size: int, embed: Callable | None = None,
                    backward: Callable | None = None, no_sync: Callable | None = None) -> LossOutput:
        """GradCache: the full-batch loss, backpropagated mini-batch by mini-batch (backward included).

        ``embed`` is the (possibly DDP-wrapped) task called with ``features=``.
        """
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
        indices = explicit if self.miner is None and explicit is not None and self.needs.accepts_indices else None
        if not self.needs.gathers:
            if self.miner is not None:
                indices = self.miner(embeddings, labels, ref, ref_labels)
            return self.loss(embeddings, labels, ref_embeddings=ref, ref_labels=ref_labels, indices=indices)
        return self.local_loss(embeddings, labels, ref, ref_labels, indices=indices, miner=self.miner)

    def scored_pairs(self, anchors: torch.Tensor, others: torch.Tensor, pair_labels: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(len(anchors), device=anchors.device)
        is_positive = pair_labels.to(anchors.device) > 0.5
        # Labels unique across devices; a negative pair's ref gets a label no anchor has.
        labels, _ = resolve_global_labels(anchors, None, others, None)
        ref_labels = torch.where(is_positive, labels, -(labels + 1))
        indices = None
        if self.needs.accepts_indices:
            pos, neg = rows[is_positive], rows[~is_positive]
            indices = PairIndices(pos, pos, neg, neg)
        return self.local_loss(anchors, labels, others, ref_labels, indices=indices)

    def local_loss(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``compute_local_loss`` with what the loss declares (tuples, two directions)."""
        return compute_local_loss(self.loss, *args, **kwargs, symmetric=self.needs.symmetric,
                                  accepts_indices=self.needs.accepts_indices)


def text_task_class(needs: LossNeeds, teacher: Any = None) -> type[EmbeddingTask]:
    """The text task for a loss with these needs: the subclass that serves them, else EmbeddingTask."""
    for task_class in EmbeddingTask.__subclasses__():
        if task_class.serves(needs, teacher):
            return task_class
    return EmbeddingTask


def explicit_triplets(size: int, num_negatives: int, device: torch.device) -> TripletIndices:
    """Row i's triplets: (anchor i, ref row i, ref row (j + 1) * size + i) for each negative slot j."""
    rows = torch.arange(size, device=device)
    return TripletIndices(
        anchor=rows.repeat(num_negatives),
        positive=rows.repeat(num_negatives),
        negative=torch.cat([rows + (j + 1) * size for j in range(num_negatives)]),
    )
