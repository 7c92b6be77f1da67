"""A trained twin of the model, for losses that contrast two copies of it (contrastive tension).

The twin is a copy of the embedder made when the task is built, trained beside it (its
parameters are the task's, so the optimiser, DDP and checkpoints see them) and never saved: the
model the run saves is the embedder, as in sentence-transformers.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from textdml.distributed import compute_local_loss


def twin_for(loss: Any, embedder: nn.Module) -> nn.Module | None:
    """A trainable copy of ``embedder`` when the loss asks for one (``needs_twin``)."""
    return copy.deepcopy(embedder) if getattr(loss, "needs_twin", False) else None


def twin_loss(loss: Any, embedder: nn.Module, twin: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """Both copies embed the batch's sentences; the loss compares the twin's rows with the model's."""
    inputs = batch["inputs"]
    if len(inputs.role_sizes) != 1:
        raise ValueError(f"{type(loss).__name__} trains on plain sentences (one anchor column), "
                         f"got {len(inputs.role_sizes)} text columns")
    model_rows = inputs.split(torch.cat([embedder(block) for block in inputs.blocks]))[0]
    twin_rows = inputs.split(torch.cat([twin(block) for block in inputs.blocks]))[0]
    labels = batch["labels"].to(model_rows.device)
    return compute_local_loss(loss, twin_rows, labels, model_rows, labels)
