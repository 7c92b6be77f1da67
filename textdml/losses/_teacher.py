"""Shared machinery of the losses that learn from a frozen second model (distillation, GISTEmbed).

A loss never holds a model: it *names* its teacher (``loss: {name: mse, teacher: <path or Hub id>}``)
and the task loads it, embeds each batch's raw texts with it under ``no_grad`` and passes the
results in as ``teacher_embeddings`` (rows of ``embeddings``) and ``teacher_ref_embeddings``
(rows of ``ref_embeddings``). See ``textdml.training.tasks.teacher``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from textdml.losses.base import BaseLoss
from textdml.losses.needs import LossNeeds
from textdml.losses.ops import aligned_cosine
from textdml.miners.base import upcast

PairSimilarity = Literal["dot", "cosine"]


def check_similarity(similarity: str) -> None:
    """Raise a ``ValueError`` unless ``similarity`` is one of :data:`PairSimilarity`."""
    if similarity not in ("dot", "cosine"):
        raise ValueError(f"similarity must be 'dot' or 'cosine', got {similarity!r}")


def candidate_scores(queries: torch.Tensor, ref: torch.Tensor, similarity: PairSimilarity, owner: str) -> torch.Tensor:
    """``(N, D), ((1 + k) N, D) -> (N, 1 + k)``: each query's score with its positive, then each negative.

    ``ref`` holds the rows ``cat(positives, negatives_1, ..., negatives_k)``. Slot ``j`` is scored as
    one contiguous ``(N, D)`` block against the queries (no strided per-query view), and the cosine
    divides the dot products by the norms (:func:`~textdml.losses.ops.aligned_cosine`): the same
    values as normalising first, at about half the time.
    """
    check_similarity(similarity)
    n = len(queries)
    if n == 0 or len(ref) % n:
        raise ValueError(f"{owner}: ref_embeddings must be the positives then each negative slot, a multiple of "
                         f"{n} rows (one per anchor), got {len(ref)}")
    docs = ref.reshape(len(ref) // n, n, -1)  # (1 + k, N, D): slot j holds every query's j-th candidate
    scores = aligned_cosine(queries, docs) if similarity == "cosine" else (docs * queries).sum(dim=-1)  # (1 + k, N)
    return scores.T


class TeacherLoss(BaseLoss):
    """Base of the losses that take a teacher's (or guide's) embeddings of the same texts."""

    needs: ClassVar[LossNeeds] = LossNeeds(
        # Whether precomputed teacher scores (a ``score`` column of triplets) can replace the teacher model.
        takes_teacher_scores=False,
        # The config key that names the frozen model; the task loads and runs it.
        teacher_role="teacher",
    )
    #: Whether the teacher's embeddings are compared with the student's directly (dimensions must match).
    compares_embeddings: ClassVar[bool] = False

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
                             f"the model with loss.{self.needs.teacher_role}=<folder or Hub id>, or pass them in Python")
        if len(teacher_embeddings) != len(embeddings):
            raise ValueError(f"{name}: {len(embeddings)} embeddings but {len(teacher_embeddings)} teacher_embeddings")
        if ref_embeddings is not None:
            if teacher_ref_embeddings is None or len(teacher_ref_embeddings) != len(ref_embeddings):
                got = None if teacher_ref_embeddings is None else len(teacher_ref_embeddings)
                raise ValueError(f"{name}: {len(ref_embeddings)} ref_embeddings need as many teacher_ref_embeddings "
                                 f"(got {got})")
            teacher_ref_embeddings = upcast(teacher_ref_embeddings.detach()).to(embeddings.device)
        return upcast(teacher_embeddings.detach()).to(embeddings.device), teacher_ref_embeddings
