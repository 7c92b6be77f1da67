from __future__ import annotations

import math
from typing import ClassVar

import torch

from textdml.indices import TupleIndices
from textdml.losses._teacher import PairSimilarity, TeacherLoss, candidate_scores, check_similarity
from textdml.losses.needs import LossNeeds
from textdml.miners.base import upcast
from textdml.registry import LOSSES


@LOSSES.register("distill_kl_div")
class DistillKLDivLoss(TeacherLoss):
    """Score distillation: the student's softmax over a query's candidates matches the teacher's.

    Each query's positive and hard negatives are scored by both models; the student minimises the
    KL divergence from the teacher's distribution over them (the whole ranking, not only margins).

    Formula: ``L = T_s^2 * mean_i KL(softmax(t_i / T_t) || softmax(s_i / T_s))`` with ``s_i``, ``t_i``
    the ``1 + k`` candidate scores of query ``i``.

    Args:
        teacher: the teacher model (a folder or Hub id), loaded and run by the task.
        similarity: ``dot`` (sentence-transformers' default) or ``cosine``, for student and teacher.
        temperature: softmax temperature of both sides (unless set one by one below).
        student_temperature, teacher_temperature: per-side temperatures.

    Inputs:
        Triplets with one or more negatives: ``embeddings`` the queries, ``ref_embeddings`` the
        positives then each negative slot, and the teacher's embeddings of the same texts, or
        precomputed ``teacher_scores`` (N, 1 + k) (a list ``score`` column, as sentence-transformers' labels).

    Requirements:
        At least one negative per query (a softmax over one candidate is constant).

    References:
        Lin, Yang & Lin, "Distilling Dense Representations for Ranking using Tightly-Coupled
        Teachers", 2020 (arXiv 2010.11386); sentence-transformers' ``DistillKLDivLoss``.

    Example:
        >>> import torch
        >>> loss = DistillKLDivLoss()
        >>> queries, docs = torch.randn(4, 8), torch.randn(8, 8)
        >>> round(loss(queries, ref_embeddings=docs, teacher_embeddings=queries, teacher_ref_embeddings=docs).item(), 6)
        0.0
    """

    needs: ClassVar[LossNeeds] = LossNeeds(
        input_kinds=("triplets",),
        gathers=False,  # one term per query: nothing to compare across devices
        takes_teacher_scores=True,
        teacher_role="teacher",
    )
    citation = """@misc{lin2020distilling,
  title={Distilling Dense Representations for Ranking using Tightly-Coupled Teachers},
  author={Lin, Sheng-Chieh and Yang, Jheng-Hong and Lin, Jimmy},
  year={2020},
  eprint={2010.11386},
  archivePrefix={arXiv}
}"""

    def __init__(self, teacher: str | None = None, similarity: PairSimilarity = "dot", temperature: float = 1.0,
                 student_temperature: float | None = None, teacher_temperature: float | None = None):
        super().__init__(teacher)
        check_similarity(similarity)
        self.similarity: PairSimilarity = similarity
        self.temperature = temperature
        self.student_temperature = temperature if student_temperature is None else student_temperature
        self.teacher_temperature = temperature if teacher_temperature is None else teacher_temperature
        for name in ("temperature", "student_temperature", "teacher_temperature"):
            value = getattr(self, name)
            if not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive finite number, got {value}")

    def scores(self, queries: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """``(N, 1 + k)``: each query's score with its positive, then with each negative."""
        scores = candidate_scores(queries, ref, self.similarity, type(self).__name__)  # (N, 1 + k)
        if scores.shape[1] < 2:
            raise ValueError("DistillKLDivLoss needs at least one negative per query: a softmax over one candidate "
                             "is constant (columns anchor, positive, negative_1..k)")
        return scores

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
        teacher_scores: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if ref_embeddings is None:
            raise ValueError("DistillKLDivLoss needs ref_embeddings: the positives then each negative slot")
        self.check_shapes(embeddings, ref_embeddings)
        student = self.scores(upcast(embeddings), upcast(ref_embeddings))
        if teacher_scores is None:
            teacher, teacher_ref = self.teacher_inputs(embeddings, teacher_embeddings, ref_embeddings,
                                                       teacher_ref_embeddings)
            teacher_scores = self.scores(teacher, teacher_ref)  # type: ignore[arg-type]
        teacher_scores = upcast(teacher_scores.detach()).to(student.device)
        if teacher_scores.shape != student.shape:
            raise ValueError(f"DistillKLDivLoss: teacher_scores must be (N, 1 + k) = {tuple(student.shape)}, "
                             f"got {tuple(teacher_scores.shape)}")
        log_student = torch.log_softmax(student / self.student_temperature, dim=1)
        log_teacher = torch.log_softmax(teacher_scores / self.teacher_temperature, dim=1)
        kl = (log_teacher.exp() * (log_teacher - log_student)).sum(dim=1)  # (N,)
        return kl.mean() * self.student_temperature**2
