from __future__ import annotations

from typing import ClassVar

from textdml.losses._splade import SPLADE_CITATION, SpladeLossMixin, SpladeRegularization
from textdml.losses.info_nce import InfoNCELoss
from textdml.losses.needs import LossNeeds
from textdml.registry import LOSSES


@LOSSES.register("sparse_info_nce")
class SparseInfoNCELoss(SpladeLossMixin, InfoNCELoss):
    """InfoNCE for a sparse (SPLADE) model, with FLOPS regularisation of queries and documents.

    Each query must pick its positive among every document of the batch (the other queries'
    positives and all hard negatives), scored by dot product; FLOPS terms keep query and document
    vectors sparse. This is sentence-transformers' ``SpladeLoss`` around
    ``SparseMultipleNegativesRankingLoss``, with the same defaults (``scale`` 1, dot product).

    Formula: ``L = CE(scale * q_i . d_j, i) + lambda_q FLOPS(q) + lambda_d FLOPS(d)``, with
    ``FLOPS(x) = sum_v (mean_i |x_iv|)^2``.

    Args:
        scale: the factor on the dot products (``1 / temperature``; 1 as sentence-transformers: SPLADE
            dot products are already large).
        query_regularizer_weight: lambda_q (sentence-transformers' examples use 5e-5).
        document_regularizer_weight: lambda_d (3e-5 in sentence-transformers' examples).
        query_regularizer_threshold: queries with at most this many non-zeros escape FLOPS.
        document_regularizer_threshold: documents with at most this many non-zeros escape FLOPS.

    Inputs:
        Pairs ``(anchor, positive)`` or triplets with ``negative`` / ``negative_1..k`` (e.g. mined):
        ``embeddings`` the queries, ``ref_embeddings`` the positives then each negative slot.

    Requirements:
        A sparse model (``model.kind: sparse``); a no-duplicates sampler, so that a repeated
        positive does not act as a negative.

    References:
        Formal et al., "From Distillation to Hard Negative Sampling: Making Sparse Neural IR Models
        More Effective", SIGIR 2022 (arXiv 2205.04733); Paria et al., "Minimizing FLOPs", ICLR 2020;
        sentence-transformers' ``SpladeLoss``, ``FlopsLoss`` and ``SparseMultipleNegativesRankingLoss``.

    Example:
        >>> import torch
        >>> loss = SparseInfoNCELoss(query_regularizer_weight=5e-5, document_regularizer_weight=3e-5)
        >>> queries, documents = torch.rand(4, 30), torch.rand(4, 30)
        >>> loss(queries, ref_embeddings=documents).shape
        torch.Size([])
    """

    # Each device's queries meet its own documents, and FLOPS is a statistic of each device's batch,
    # as in sentence-transformers (gather_across_devices=False by default).
    needs: ClassVar[LossNeeds] = LossNeeds(input_kinds=("pairs", "triplets"), gathers=False)
    citation = SPLADE_CITATION

    def __init__(self, scale: float = 1.0, query_regularizer_weight: float | None = 5e-5,
                 document_regularizer_weight: float | None = 3e-5, query_regularizer_threshold: int | None = None,
                 document_regularizer_threshold: int | None = None):
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        super().__init__(temperature=1.0 / scale, distance="dot_product")
        self.scale = scale
        self.splade = SpladeRegularization(query_regularizer_weight, document_regularizer_weight,
                                           query_regularizer_threshold, document_regularizer_threshold)
