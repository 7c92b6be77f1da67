from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from textdml.indices import TupleIndices
from textdml.losses._teacher import TeacherLoss
from textdml.losses.needs import LossNeeds
from textdml.miners.base import upcast
from textdml.registry import LOSSES


@LOSSES.register("mse")
class MSELoss(TeacherLoss):
    """Embedding distillation: the student's embedding of a text regresses onto the teacher's.

    Every text of the batch (anchors, positives, negatives, or labelled texts) is embedded by the
    frozen teacher and by the student; the loss is their mean squared difference. With a
    different output size the student needs a projection: a learned linear map inside the loss
    (``projection_dim``, as sentence-transformers) or a student that outputs the teacher's size
    (``model.dense_dim``).

    Formula: ``L = mean_{texts, dims} (P s(x) - t(x))^2`` (``P`` the identity without a projection).

    Args:
        teacher: the teacher model (a folder or Hub id), loaded and run by the task.
        projection_dim: learn a linear map from the student's size to this one (the teacher's).
        embedding_size: the student's size (filled in from the model; needed with ``projection_dim``).

    Inputs:
        Any text data (pairs, triplets, labelled texts): ``loss(embeddings, teacher_embeddings=...,
        ref_embeddings=..., teacher_ref_embeddings=...)``; labels are not used.

    Requirements:
        A teacher whose embedding size is the student's, or a projection.

    References:
        Reimers & Gurevych, "Making Monolingual Sentence Embeddings Multilingual using Knowledge
        Distillation", EMNLP 2020 (sentence-transformers' ``MSELoss``).

    Example:
        >>> import torch
        >>> loss = MSELoss()
        >>> student, teacher = torch.randn(4, 8), torch.randn(4, 8)
        >>> loss(student, teacher_embeddings=teacher).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = LossNeeds(
        input_kinds=("pairs", "triplets", "labelled"),
        gathers=False,  # one term per text: nothing to compare across devices
        teacher_role="teacher",
    )
    compares_embeddings = True
    citation = """@inproceedings{reimers-2020-multilingual-sentence-bert,
  title={Making Monolingual Sentence Embeddings Multilingual using Knowledge Distillation},
  author={Reimers, Nils and Gurevych, Iryna},
  booktitle={Proceedings of the 2020 Conference on Empirical Methods in Natural Language Processing},
  year={2020}
}"""

    def __init__(self, teacher: str | None = None, projection_dim: int | None = None,
                 embedding_size: int | None = None):
        super().__init__(teacher)
        self.projection: nn.Linear | None = None
        if projection_dim is not None:
            if embedding_size is None:
                raise ValueError("MSELoss(projection_dim=...) needs embedding_size, the student's output size")
            self.projection = nn.Linear(embedding_size, projection_dim)

    def check_teacher(self, student_dim: int, teacher_dim: int) -> None:
        out_dim = self.projection.out_features if self.projection is not None else student_dim
        if self.projection is not None and self.projection.in_features != student_dim:
            raise ValueError(f"MSELoss: the projection maps {self.projection.in_features}-d inputs but the student "
                             f"gives {student_dim}-d embeddings; set loss.embedding_size={student_dim} or drop it")
        if out_dim != teacher_dim:
            raise ValueError(
                f"MSELoss: the teacher {self.teacher!r} gives {teacher_dim}-d embeddings but the student gives "
                f"{out_dim}-d ones, and there is no projection between them. Set loss.projection_dim={teacher_dim} "
                f"(a linear map student -> teacher learned with the loss), or model.dense_dim={teacher_dim} (the "
                "student itself outputs the teacher's size), or pick a teacher of the student's size."
            )

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        ref_embeddings: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
        indices: TupleIndices | None = None,
        teacher_embeddings: torch.Tensor | None = None,
        teacher_ref_embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self.check_shapes(embeddings, ref_embeddings)
        if indices is not None:
            raise ValueError("MSELoss does not take mined tuples; remove the miner")
        teacher, teacher_ref = self.teacher_inputs(embeddings, teacher_embeddings, ref_embeddings,
                                                   teacher_ref_embeddings)
        # The squared errors of the texts and of the ref texts, summed, over the number of values:
        # the mean over all the rows without copying them into one tensor (nor the copy's backward).
        student = upcast(embeddings) if self.projection is None else self.projection(upcast(embeddings))
        if student.shape[-1] != teacher.shape[-1]:
            self.check_teacher(embeddings.shape[-1], teacher.shape[-1])
        total, count = F.mse_loss(student, teacher, reduction="sum"), teacher.numel()
        if ref_embeddings is not None:
            ref = upcast(ref_embeddings) if self.projection is None else self.projection(upcast(ref_embeddings))
            total = total + F.mse_loss(ref, teacher_ref, reduction="sum")  # type: ignore[arg-type]
            count += teacher_ref.numel()  # type: ignore[union-attr]
        return total / count
