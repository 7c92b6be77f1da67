"""Shared machinery of the losses that learn from a frozen second model (distillation, GISTEmbed).

A loss never holds a model: it *names* its teacher (``loss: {name: mse, teacher: <path or Hub id>}``)
and the task loads it, embeds each batch's raw texts with it under ``no_grad`` and passes the
results in as ``teacher_embeddings`` (rows of ``embeddings``) and ``teacher_ref_embeddings``
(rows of ``ref_embeddings``). See ``textdml.training.teacher``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from textdml.losses.base import BaseLoss
from textdml.miners.base import upcast

PairSimilarity = Literal["dot", "cosine"]


def pair_scores(a: torch.Tensor, b: torch.Tensor, similarity: PairSimilarity) -> torch.Tensor:
    """``(N, ..., D), (N, ..., D) -> (N, ...)``: the similarity of aligned rows."""
    if similarity == "cosine":
        return F.cosine_similarity(a, b, dim=-1)
    if similarity == "dot":
        return (a * b).sum(dim=-1)
    raise ValueError(f"similarity must be 'dot' or 'cosine', got {similarity!r}")


def candidates(anchors: torch.Tensor, ref: torch.Tensor, owner: str) -> torch.Tensor:
    """Ref rows ``cat(positives, negatives_1, ..., negatives_k)`` -> ``(N, 1 + k, D)`` per anchor."""
    n = len(anchors)
    if n == 0 or len(ref) % n:
        raise ValueError(f"{owner}: ref_embeddings must be the positives then each negative slot, a multiple of "
                         f"{n} rows (one per anchor), got {len(ref)}")
    return ref.reshape(len(ref) // n, n, -1).transpose(0, 1)


class TeacherLoss(BaseLoss):
    """Base of the losses that take a teacher's (or guide's) embeddings of the same texts."""

    #: The config key that names the frozen model; the task loads and runs it.
    teacher_role: ClassVar[str] = "teacher"
    #: Whether the teacher's embeddings are compared with the student's directly (dimensions must match).
    compares_embeddings: ClassVar[bool] = False
    #: Whether precomputed teacher scores (a ``score`` column of triplets) can replace the teacher model.
    takes_teacher_scores: ClassVar[bool] = False

    def __init__(self, teacher: str | None = None):
        super().__init__()
        # The name only: a loss never holds a model (the task owns the frozen teacher).
        self.teacher = teacher

    def check_teacher(self, student_dim: int, teacher_dim: int) -> None:
        """Called by the task once the teacher is loaded; losses that compare embeddings override it."""

    def teacher_inputs(self, embeddings: torch.Tensor, teacher_embeddings: torch.Tensor | None,
                       ref_embeddings: torch.Tensor | None, teacher_ref_embeddings: torch.Tensor | None,
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Check the teacher's rows against the student's and return them as float32 constants."""
        name = type(self).__name__
        if teacher_embeddings is None:
            raise ValueError(f"{name} needs teacher_embeddings (the teacher's embeddings of the same texts): name "
                             f"the model with loss.{self.teacher_role}=<folder or Hub id>, or pass them in Python")
        if len(teacher_embeddings) != len(embeddings):
            raise ValueError(f"{name}: {len(embeddings)} embeddings but {len(teacher_embeddings)} teacher_embeddings")
        if ref_embeddings is not None:
            if teacher_ref_embeddings is None or len(teacher_ref_embeddings) != len(ref_embeddings):
                got = None if teacher_ref_embeddings is None else len(teacher_ref_embeddings)
                raise ValueError(f"{name}: {len(ref_embeddings)} ref_embeddings need as many teacher_ref_embeddings "
                                 f"(got {got})")
            teacher_ref_embeddings = upcast(teacher_ref_embeddings.detach()).to(embeddings.device)
        return upcast(teacher_embeddings.detach()).to(embeddings.device), teacher_ref_embeddings
