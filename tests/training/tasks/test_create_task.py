"""create_task picks one task per objective from the loss's needs and the model's kind."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest
import torch

from textdml.data.pipeline import input_kinds
from textdml.losses import (
    ArcFaceLoss,
    CachedGISTEmbedLoss,
    ClipLoss,
    ContrastiveTensionLoss,
    DenoisingAutoEncoderLoss,
    DistillKLDivLoss,
    InfoNCELoss,
    LossNeeds,
    MatryoshkaLoss,
    TripletLoss,
)
from textdml.training.tasks import (
    DenoisingTask,
    EmbeddingTask,
    ImageTextTask,
    TeacherTask,
    TwinTask,
    create_task,
    gathers_across_processes,
    own_mini_batch_size,
)


class ImageTextModel(torch.nn.Module):
    """Just enough of a dual encoder for ``model_kind``: an image tower beside the text one."""

    def embed_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.flatten(1)


@pytest.mark.parametrize(("make_loss", "task_class"), [
    (TripletLoss, EmbeddingTask),
    (InfoNCELoss, EmbeddingTask),
    (DistillKLDivLoss, TeacherTask),  # no teacher model: the data brings its scores
    (ContrastiveTensionLoss, TwinTask),
    (DenoisingAutoEncoderLoss, DenoisingTask),
])
def test_a_text_model_gets_the_task_of_its_loss_needs(tiny_embedder, make_loss, task_class) -> None:
    task = create_task(tiny_embedder, make_loss())
    assert type(task) is task_class
    assert (task.twin is not None) == (task_class is TwinTask)
    assert (task.decoder is not None) == (task_class is DenoisingTask)


def test_an_image_text_model_gets_the_image_text_task() -> None:
    assert type(create_task(ImageTextModel(), ClipLoss())) is ImageTextTask


def test_the_old_embedding_task_call_still_builds_the_task_of_the_needs(tiny_embedder) -> None:
    assert type(EmbeddingTask(tiny_embedder, ContrastiveTensionLoss())) is TwinTask
    assert type(EmbeddingTask(tiny_embedder, TripletLoss())) is EmbeddingTask


def test_a_new_loss_with_a_new_need_is_picked_by_its_needs_alone(tiny_embedder) -> None:
    class TeacherScoresLoss(TripletLoss):
        """A loss that learns from a frozen teacher's scores: it only declares so."""

        needs: ClassVar[LossNeeds] = dataclasses.replace(TripletLoss.needs, teacher_role="teacher",
                                                         takes_teacher_scores=True)
        teacher = None

    task = create_task(tiny_embedder, TeacherScoresLoss())
    assert type(task) is TeacherTask and task.teacher is None


def test_own_mini_batch_size_and_gathers_come_from_the_needs(tiny_embedder, tiny_model_dir) -> None:
    cached = create_task(tiny_embedder, CachedGISTEmbedLoss(guide=str(tiny_model_dir), mini_batch_size=5))
    assert type(cached) is TeacherTask and own_mini_batch_size(cached) == 5
    assert own_mini_batch_size(create_task(tiny_embedder, TripletLoss())) is None
    assert gathers_across_processes(create_task(tiny_embedder, TripletLoss()))
    class_level = ArcFaceLoss(num_classes=3, embedding_size=tiny_embedder.embedding_dim)
    assert not gathers_across_processes(class_level)
    # A wrapper holds its inner loss as .loss: it is still read as a loss, not as a task.
    assert not gathers_across_processes(MatryoshkaLoss(class_level, [4]))
    assert gathers_across_processes(torch.nn.MSELoss())  # a loss that declares nothing: as before


def test_input_kinds_are_read_from_the_class_before_the_loss_is_built() -> None:
    assert input_kinds(ArcFaceLoss) == ("labelled",) and input_kinds(InfoNCELoss) == ("pairs", "triplets")
    assert input_kinds(torch.nn.MSELoss) == ("pairs", "triplets", "scored_pairs", "labelled")  # as the loop assumed
