"""Tasks: what turns a batch into a loss for one objective (the loop never knows which loss runs).

A task owns the model, the loss and an optional miner; ``task(batch)`` (``training_step``) gives a
``LossOutput``, ``cached_step`` the GradCache version, and ``prepare_data(data, seed)`` fits the
training data to what the loss needs (score ranges, raw texts for a teacher, input noise) before
the loader is built.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from textdml.models.saving import model_kind
from textdml.training.task import EmbeddingTask, LossOutput


class Task(Protocol):
    embedder: torch.nn.Module
    loss: Any
    miner: Any

    def training_step(self, batch: dict[str, Any]) -> LossOutput: ...

    def prepare_data(self, data: Any, seed: int) -> None: ...


def create_task(model: torch.nn.Module, loss: Any, miner: Any = None) -> Any:
    """The task for this model and loss (text or image-text)."""
    if model_kind(model) == "image_text":
        from textdml.training.multimodal_task import ImageTextTask

        return ImageTextTask(model, loss, miner)
    return EmbeddingTask(model, loss, miner)


def own_mini_batch_size(task: Any) -> int | None:
    """A cached loss (cached_gist_embed) brings its own GradCache mini-batch size."""
    return getattr(task.loss, "mini_batch_size", None)


def gathers_across_processes(task_or_loss: Any) -> bool:
    """Whether the loss meets the reference rows of every process (False: class-level losses)."""
    loss = getattr(task_or_loss, "loss", task_or_loss)
    return bool(getattr(loss, "gathers", True))


__all__ = ["LossOutput", "Task", "create_task", "gathers_across_processes", "own_mini_batch_size"]
