"""The twin task: a trained copy of the model, for losses that contrast two copies of it (contrastive tension).

The twin is a copy of the embedder made when the task is built, trained beside it (its
parameters are the task's, so the optimiser, DDP and checkpoints see them) and never saved: the
model the run saves is the embedder, as in sentence-transformers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from textdml.distributed import compute_local_loss
from textdml.losses.needs import LossNeeds, loss_needs
from textdml.training.tasks.base import LossOutput
from textdml.training.tasks.embedding import EmbeddingTask


class TwinTask(EmbeddingTask):
    """The text task of losses whose needs ask for a ``twin``: both copies embed every sentence."""

    def __init__(self, embedder: nn.Module, loss: Any, miner: Any = None, teacher: Any = None):
        super().__init__(embedder, loss, miner, teacher)
        self.twin = twin_for(loss, embedder)

    @classmethod
    def serves(cls, needs: LossNeeds, teacher: Any = None) -> bool:
        return needs.twin

    def training_step(self, batch: dict[str, Any]) -> LossOutput:
        return LossOutput(twin_loss(self.loss, self.embedder, self.twin, batch), batch["inputs"].role_sizes[0])

    def cached_step(self, batch: dict[str, Any], mini_batch_size: int, embed: Callable | None = None,
                    backward: Callable | None = None, no_sync: Callable | None = None) -> LossOutput:
        raise ValueError(f"{type(self.loss).__name__} trains a twin of the model, which GradCache does not "
                         "cover: set training.grad_cache=false")


def twin_for(loss: Any, embedder: nn.Module) -> nn.Module | None:
    """A trainable copy of ``embedder`` when the loss asks for one (``needs.twin``)."""
    return copy.deepcopy(embedder) if loss_needs(loss).twin else None


def twin_loss(loss: Any, embedder: nn.Module, twin: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """Both copies embed the batch's sentences; the loss compares the twin's rows with the model's."""
    inputs = batch["inputs"]
    if len(inputs.role_sizes) != 1:
        raise ValueError(f"{type(loss).__name__} trains on plain sentences (one anchor column), "
                         f"got {len(inputs.role_sizes)} text columns")
    model_rows = inputs.split(torch.cat([embedder(block) for block in inputs.blocks]))[0]
    twin_rows = inputs.split(torch.cat([twin(block) for block in inputs.blocks]))[0]
    labels = batch["labels"].to(model_rows.device)
    needs = loss_needs(loss)
    return compute_local_loss(loss, twin_rows, labels, model_rows, labels, symmetric=needs.symmetric,
                              accepts_indices=needs.accepts_indices)
