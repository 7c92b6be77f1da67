from __future__ import annotations

from typing import ClassVar

import torch

from textdml.indices import TupleIndices
from textdml.losses._teacher import PairSimilarity, TeacherLoss, candidate_scores, check_similarity
from textdml.losses.needs import LossNeeds
from textdml.miners.base import upcast
from textdml.registry import LOSSES


@LOSSES.register("margin_mse")
class MarginMSELoss(TeacherLoss):
    """MarginMSE: the student's margin between a positive and each negative matches the teacher's.

    The teacher (often a cross-encoder or a larger bi-encoder) sets how much better the positive
    is than each hard negative; the student learns that margin, not the absolute scores, so the
    two models may score on different scales.

    Formula: ``L = mean_{i, j} ((s(q_i, p_i) - s(q_i, n_ij)) - (t(q_i, p_i) - t(q_i, n_ij)))^2``.

    Args:
        teacher: the teacher model (a folder or Hub id), loaded and run by the task.
        similarity: ``dot`` (sentence-transformers' default) or ``cosine``, for student and teacher.

    Inputs:
        Triplets (``anchor, positive, negative`` or ``negative_1..k``): ``embeddings`` the queries,
        ``ref_embeddings`` the positives then each negative slot, and the teacher's embeddings of
        the same texts. Or precomputed (a ``score`` column, as sentence-transformers' labels):
        ``teacher_scores`` holding the margins ``(N,)`` / ``(N, k)`` or the raw scores of the
        positive and each negative ``(N, 1 + k)``; ``teacher_margins`` (N, k) in Python.

    Requirements:
        At least one hard negative per query.

    References:
        Hofstätter et al., "Improving Efficient Neural Ranking Models with Cross-Architecture
        Knowledge Distillation", 2020 (arXiv 2010.02666); sentence-transformers' ``MarginMSELoss``.

    Example:
        >>> import torch
        >>> loss = MarginMSELoss()
        >>> queries, docs = torch.randn(4, 8), torch.randn(8, 8)  # 4 positives, then 4 negatives
        >>> loss(queries, ref_embeddings=docs, teacher_embeddings=queries, teacher_ref_embeddings=docs).item()
        0.0
    """

    needs: ClassVar[LossNeeds] = LossNeeds(
        input_kinds=("triplets",),
        gathers=False,  # one term per query: nothing to compare across devices
        takes_teacher_scores=True,
        teacher_role="teacher",
    )
    citation = """@misc{hofstatter2021improving,
  title={Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation},
  author={Hofst{\\"a}tter, Sebastian and Althammer, Sophia and Schr{\\"o}der, Michael and Sertkan, Mete and Hanbury, Allan},
  year={2020},
  eprint={2010.02666},
  archivePrefix={arXiv}
}"""

    def __init__(self, teacher: str | None = None, similarity: PairSimilarity = "dot"):
        super().__init__(teacher)
        check_similarity(similarity)
        self.similarity: PairSimilarity = similarity

    def margins(self, queries: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """``(N, k)``: score of the positive minus the score of each negative."""
        scores = candidate_scores(queries, ref, self.similarity, type(self).__name__)  # (N, 1 + k)
        if scores.shape[1] < 2:
            raise ValueError("MarginMSELoss needs at least one negative per query (columns anchor, positive, negative)")
        return scores[:, :1] - scores[:, 1:]

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
        teacher_margins: torch.Tensor | None = None,
        teacher_scores: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if ref_embeddings is None:
            raise ValueError("MarginMSELoss needs ref_embeddings: the positives then each negative slot")
        self.check_shapes(embeddings, ref_embeddings)
        student = self.margins(upcast(embeddings), upcast(ref_embeddings))
        if teacher_scores is not None and teacher_margins is None:
            teacher_scores = teacher_scores.reshape(len(student), -1)
            # (N, 1 + k): the positive's score then each negative's; otherwise margins already.
            if teacher_scores.shape[1] == student.shape[1] + 1:
                teacher_margins = teacher_scores[:, :1] - teacher_scores[:, 1:]
            else:
                teacher_margins = teacher_scores
        if teacher_margins is None:
            teacher, teacher_ref = self.teacher_inputs(embeddings, teacher_embeddings, ref_embeddings,
                                                       teacher_ref_embeddings)
            teacher_margins = self.margins(teacher, teacher_ref)  # type: ignore[arg-type]
        teacher_margins = upcast(teacher_margins.detach()).to(student.device).reshape(len(student), -1)
        if teacher_margins.shape != student.shape:
            raise ValueError(f"MarginMSELoss: teacher_margins must be (N, k) = {tuple(student.shape)}, "
                             f"got {tuple(teacher_margins.shape)}")
        return (student - teacher_margins).pow(2).mean()
