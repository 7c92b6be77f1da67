from __future__ import annotations

from typing import ClassVar

from textdml.losses._splade import SPLADE_CITATION, SpladeLossMixin, SpladeRegularization
from textdml.losses.margin_mse import MarginMSELoss
from textdml.losses.needs import LossNeeds
from textdml.registry import LOSSES


@LOSSES.register("sparse_margin_mse")
class SparseMarginMSELoss(SpladeLossMixin, MarginMSELoss):
    """MarginMSE for a sparse (SPLADE) model, with FLOPS regularisation of queries and documents.

    The student's dot-product margin between a query's positive and each hard negative matches
    the teacher's margin (a cross-encoder's or dense model's scores, or precomputed margins in a
    ``score`` column); FLOPS terms keep query and document vectors sparse. This is
    sentence-transformers' ``SpladeLoss`` around ``SparseMarginMSELoss`` (dot product).

    Formula: ``L = mean_ij ((q_i.p_i - q_i.n_ij) - (t_ip - t_in_j))^2 + lambda_q FLOPS(q) + lambda_d FLOPS(d)``.

    Args:
        teacher: the teacher model (a folder or Hub id) the task runs; or none, with teacher scores.
        query_regularizer_weight: lambda_q (sentence-transformers' examples use 5e-5).
        document_regularizer_weight: lambda_d (3e-5 in sentence-transformers' examples).
        query_regularizer_threshold: queries with at most this many non-zeros escape FLOPS.
        document_regularizer_threshold: documents with at most this many non-zeros escape FLOPS.

    Inputs:
        Triplets (``anchor, positive, negative`` or ``negative_1..k``): ``embeddings`` the queries,
        ``ref_embeddings`` the positives then each negative slot, plus the teacher's embeddings of
        the same texts or ``teacher_scores`` / ``teacher_margins`` (see ``MarginMSELoss``).

    Requirements:
        A sparse model (``model.kind: sparse``); at least one hard negative per query.

    References:
        Formal et al., "From Distillation to Hard Negative Sampling", SIGIR 2022 (arXiv 2205.04733);
        Hofstätter et al., "Improving Efficient Neural Ranking Models with Cross-Architecture
        Knowledge Distillation", 2020; sentence-transformers' ``SpladeLoss`` and ``SparseMarginMSELoss``.

    Example:
        >>> import torch
        >>> loss = SparseMarginMSELoss()
        >>> queries, documents = torch.rand(4, 30), torch.rand(8, 30)  # 4 positives, then 4 negatives
        >>> loss(queries, ref_embeddings=documents, teacher_margins=torch.zeros(4, 1)).shape
        torch.Size([])
    """

    needs: ClassVar[LossNeeds] = MarginMSELoss.needs
    citation = SPLADE_CITATION

    def __init__(self, teacher: str | None = None, query_regularizer_weight: float | None = 5e-5,
                 document_regularizer_weight: float | None = 3e-5, query_regularizer_threshold: int | None = None,
                 document_regularizer_threshold: int | None = None):
        super().__init__(teacher, similarity="dot")
        self.splade = SpladeRegularization(query_regularizer_weight, document_regularizer_weight,
                                           query_regularizer_threshold, document_regularizer_threshold)
