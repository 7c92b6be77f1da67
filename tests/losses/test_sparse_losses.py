"""The SPLADE losses and FLOPS: against naive loops written here and against sentence-transformers'
SpladeLoss / FlopsLoss / SparseMultipleNegativesRankingLoss / SparseMarginMSELoss on the same vectors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from textdml.losses import SparseInfoNCELoss, SparseMarginMSELoss
from textdml.registry import LOSSES, REGULARIZERS
from textdml.regularizers import FlopsRegularizer

B, V, K = 4, 12, 2  # queries, vocabulary, hard negatives per query


def sparse_rows(n: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    """Non-negative rows with many exact zeros, as SPLADE writes them."""
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(n, V, generator=g, dtype=dtype)).requires_grad_()


def naive_flops(rows: torch.Tensor, threshold: int | None = None) -> float:
    kept = [row for row in rows.tolist() if threshold is None or sum(v != 0 for v in row) > threshold]
    return sum((sum(abs(row[v]) for row in kept) / len(rows)) ** 2 for v in range(V))


def naive_info_nce(q, docs, scale):
    total = 0.0
    for i, query in enumerate(q.tolist()):
        scores = [scale * sum(a * b for a, b in zip(query, doc)) for doc in docs.tolist()]
        total += -scores[i] + math.log(sum(math.exp(s) for s in scores))
    return total / len(q)


def naive_margin_mse(q, docs, teacher_margins):
    total, count = 0.0, 0
    for i, query in enumerate(q.tolist()):
        positive = sum(a * b for a, b in zip(query, docs[i].tolist()))
        for j in range(K):
            negative = sum(a * b for a, b in zip(query, docs[(j + 1) * len(q) + i].tolist()))
            total += ((positive - negative) - float(teacher_margins[i, j])) ** 2
            count += 1
    return total / count


@pytest.mark.parametrize("threshold", [None, 5])
def test_flops_matches_a_naive_loop(threshold):
    rows = sparse_rows(6, seed=0)
    assert FlopsRegularizer(threshold)(rows).item() == pytest.approx(naive_flops(rows.detach(), threshold))
    assert REGULARIZERS.get("flops") is FlopsRegularizer


@pytest.mark.parametrize("negatives", [0, K])
def test_sparse_info_nce_matches_a_naive_loop(negatives):
    q, docs = sparse_rows(B, 1), sparse_rows(B * (1 + negatives), 2)
    loss = SparseInfoNCELoss(scale=0.7, query_regularizer_weight=0.3, document_regularizer_weight=0.2)
    expected = naive_info_nce(q.detach(), docs.detach(), 0.7) + 0.3 * naive_flops(q.detach()) + \
        0.2 * naive_flops(docs.detach())
    assert loss(q, ref_embeddings=docs).item() == pytest.approx(expected, rel=1e-9)


def test_sparse_margin_mse_matches_a_naive_loop():
    q, docs = sparse_rows(B, 1), sparse_rows(B * (1 + K), 2)
    margins = torch.randn(B, K, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    loss = SparseMarginMSELoss(query_regularizer_weight=0.3, document_regularizer_weight=None)
    expected = naive_margin_mse(q.detach(), docs.detach(), margins) + 0.3 * naive_flops(q.detach())
    assert loss(q, ref_embeddings=docs, teacher_margins=margins).item() == pytest.approx(expected, rel=1e-9)


class GivenEmbeddings(nn.Module):
    """A stand-in for sentence-transformers' model: each column's 'features' are its embeddings."""

    def forward(self, features):
        return {"sentence_embedding": features["embeddings"]}


def sentence_transformers_splade(inner_name: str, columns: list[torch.Tensor], labels, **weights) -> torch.Tensor:
    from sentence_transformers.base.losses.merged_forward import column_merging_disabled
    from sentence_transformers.sparse_encoder import losses as st_losses

    model = GivenEmbeddings()
    inner = getattr(st_losses, inner_name)(model)
    splade = st_losses.SpladeLoss(model, loss=inner, **weights)
    with column_merging_disabled():
        terms = splade([{"embeddings": column} for column in columns], labels)
    return sum(terms.values())


@pytest.mark.parametrize("threshold", [None, 5])
def test_sparse_info_nce_equals_sentence_transformers_forward_and_backward(threshold):
    q, pos, neg = sparse_rows(B, 1), sparse_rows(B, 2), sparse_rows(B, 3)
    weights = dict(query_regularizer_weight=0.3, document_regularizer_weight=0.2,
                   query_regularizer_threshold=threshold, document_regularizer_threshold=threshold)
    ours = SparseInfoNCELoss(**weights)(q, ref_embeddings=torch.cat([pos, neg]))
    ours_grads = torch.autograd.grad(ours, [q, pos, neg])
    theirs = sentence_transformers_splade("SparseMultipleNegativesRankingLoss", [q, pos, neg], None, **weights)
    theirs_grads = torch.autograd.grad(theirs, [q, pos, neg])
    torch.testing.assert_close(ours, theirs)
    for mine, other in zip(ours_grads, theirs_grads):
        torch.testing.assert_close(mine, other)


def test_sparse_margin_mse_equals_sentence_transformers_forward_and_backward():
    q, pos, neg1, neg2 = (sparse_rows(B, seed) for seed in (1, 2, 3, 4))
    scores = torch.randn(B, 1 + K, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    weights = dict(query_regularizer_weight=0.3, document_regularizer_weight=0.2)
    ours = SparseMarginMSELoss(**weights)(q, ref_embeddings=torch.cat([pos, neg1, neg2]), teacher_scores=scores)
    ours_grads = torch.autograd.grad(ours, [q, pos, neg1, neg2])
    theirs = sentence_transformers_splade("SparseMarginMSELoss", [q, pos, neg1, neg2], scores, **weights)
    theirs_grads = torch.autograd.grad(theirs, [q, pos, neg1, neg2])
    torch.testing.assert_close(ours, theirs)
    for mine, other in zip(ours_grads, theirs_grads):
        torch.testing.assert_close(mine, other)


def test_flops_pushes_weights_down():
    q, docs = sparse_rows(B, 1), sparse_rows(B, 2)
    plain = SparseInfoNCELoss(query_regularizer_weight=0, document_regularizer_weight=0)
    regularised = SparseInfoNCELoss(query_regularizer_weight=1.0, document_regularizer_weight=1.0)
    assert regularised(q, ref_embeddings=docs) > plain(q, ref_embeddings=docs)
    (grad,) = torch.autograd.grad(regularised(q, ref_embeddings=docs) - plain(q, ref_embeddings=docs), [q])
    assert (grad[q.detach() > 0] > 0).all()  # the FLOPS gradient on an active weight lowers it


def test_registered_and_bad_arguments_named():
    assert LOSSES.get("sparse_info_nce") is SparseInfoNCELoss and LOSSES.get("sparse_margin_mse") is SparseMarginMSELoss
    with pytest.raises(ValueError, match="query_regularizer_weight must be >= 0"):
        SparseInfoNCELoss(query_regularizer_weight=-1)
    with pytest.raises(ValueError, match="scale must be > 0"):
        SparseInfoNCELoss(scale=0)
    with pytest.raises(ValueError, match="needs ref_embeddings"):
        SparseInfoNCELoss()(torch.rand(3, V), torch.arange(3))
