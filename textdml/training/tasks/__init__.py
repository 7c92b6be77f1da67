"""Tasks: what turns a batch into a loss for one objective (the loop never knows which loss runs).

A task owns the model, the loss and an optional miner; ``task(batch)`` (``training_step``) gives a
``LossOutput``, ``cached_step`` the GradCache version, and ``prepare_data(data, seed)`` fits the
training data to what the loss needs (score ranges, raw texts for a teacher, input noise) before
the loader is built. One task per objective, picked from the loss's ``needs`` (``LossNeeds``) and
the model's kind:

- ``embedding.EmbeddingTask``: text pairs, triplets, labelled texts, scored pairs;
- ``image_text.ImageTextTask``: an image-text model (CLIP / SigLIP or any loss on image rows);
- ``teacher.TeacherTask``: ``needs.teacher_role``, a frozen teacher or guide (or its scores);
- ``twin.TwinTask``: ``needs.twin``, a trained copy of the model (contrastive tension);
- ``denoising.DenoisingTask``: ``needs.decoder``, a decoder on the embeddings (TSDAE).

Only this package and the data pipeline read a loss's needs.
"""

from __future__ import annotations

from typing import Any

import torch

from textdml.losses.needs import loss_needs
from textdml.models.saving import model_kind
from textdml.training.tasks.base import LossOutput, Task
from textdml.training.tasks.denoising import DenoisingTask
from textdml.training.tasks.embedding import EmbeddingTask, text_task_class
from textdml.training.tasks.image_text import ImageTextTask
from textdml.training.tasks.teacher import TeacherTask
from textdml.training.tasks.twin import TwinTask


def create_task(model: torch.nn.Module, loss: Any, miner: Any = None) -> Any:
    """The task for this model and loss: image-text by the model's kind, else by the loss's needs."""
    if model_kind(model) == "image_text":
        return ImageTextTask(model, loss, miner)
    return text_task_class(loss_needs(loss))(model, loss, miner)


def own_mini_batch_size(task: Any) -> int | None:
    """A cached loss (cached_gist_embed) brings its own GradCache mini-batch size."""
    return loss_needs(task.loss).mini_batch_size


def gathers_across_processes(task_or_loss: Any) -> bool:
    """Whether the loss meets the reference rows of every process (False: class-level losses)."""
    # A task has a training_step; a loss (even a wrapper with a .loss inside) does not.
    loss = task_or_loss.loss if hasattr(task_or_loss, "training_step") else task_or_loss
    return loss_needs(loss).gathers


__all__ = [
    "DenoisingTask",
    "EmbeddingTask",
    "ImageTextTask",
    "LossOutput",
    "Task",
    "TeacherTask",
    "TwinTask",
    "create_task",
    "gathers_across_processes",
    "own_mini_batch_size",
]
