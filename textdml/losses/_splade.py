"""What the SPLADE losses share: a ranking loss on sparse vectors plus FLOPS on queries and on documents.

A sparse model is kept sparse by a FLOPS term on each side with its own weight: queries (the
``embeddings``) are usually held sparser than documents (``ref_embeddings``: positives and hard
negatives), as sentence-transformers' ``SpladeLoss`` does with ``query_regularizer_weight`` /
``document_regularizer_weight``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from textdml.regularizers.flops import FlopsRegularizer

SPLADE_CITATION = """@misc{formal2022distillationhardnegativesampling,
  title={From Distillation to Hard Negative Sampling: Making Sparse Neural IR Models More Effective},
  author={Formal, Thibault and Lassance, Carlos and Piwowarski, Benjamin and Clinchant, St{\\'e}phane},
  year={2022},
  eprint={2205.04733},
  archivePrefix={arXiv}
}"""


class SpladeRegularization(nn.Module):
    """FLOPS on the queries and on the documents, each with its weight (0 or None turns a side off).

    Args:
        query_regularizer_weight: lambda_q, the weight of FLOPS on the queries.
        document_regularizer_weight: lambda_d, the weight of FLOPS on the documents.
        query_regularizer_threshold: queries with at most this many non-zeros are left out.
        document_regularizer_threshold: documents with at most this many non-zeros are left out.
    """

    def __init__(self, query_regularizer_weight: float | None, document_regularizer_weight: float | None,
                 query_regularizer_threshold: int | None = None, document_regularizer_threshold: int | None = None):
        super().__init__()
        for name, weight in (("query_regularizer_weight", query_regularizer_weight),
                             ("document_regularizer_weight", document_regularizer_weight)):
            if weight is not None and weight < 0:
                raise ValueError(f"{name} must be >= 0 (0 or null turns that FLOPS term off), got {weight}")
        self.query = FlopsRegularizer(query_regularizer_threshold, weight=query_regularizer_weight or 0.0)
        self.document = FlopsRegularizer(document_regularizer_threshold, weight=document_regularizer_weight or 0.0)

    def forward(self, queries: torch.Tensor, documents: torch.Tensor | None) -> torch.Tensor:
        total = queries.new_zeros((), dtype=torch.promote_types(queries.dtype, torch.float32))
        if self.query.weight:
            total = total + self.query(queries)
        if documents is not None and self.document.weight:
            total = total + self.document(documents)
        return total


class SpladeLossMixin:
    """Put before a ranking loss in the bases: its ``forward`` plus the two FLOPS terms."""

    splade: SpladeRegularization

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None, *,
                ref_embeddings: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if ref_embeddings is None:
            raise ValueError(f"{type(self).__name__} needs ref_embeddings (the documents: positives, then any hard "
                             "negatives) beside the queries: train it on pairs or triplets")
        value = super().forward(embeddings, labels, ref_embeddings=ref_embeddings, **kwargs)  # type: ignore[misc]
        return value + self.splade(embeddings, ref_embeddings)
