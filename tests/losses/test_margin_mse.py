from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pair_checks import assert_same_value_and_gradients
from sentence_transformers.sentence_transformer.losses import MarginMSELoss as STMarginMSELoss
from sentence_transformers.util import pairwise_cos_sim

from textdml.losses.margin_mse import MarginMSELoss


def triplets(n=5, k=2, d=8, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    queries, docs = torch.randn(n, d, generator=gen, dtype=dtype), torch.randn((1 + k) * n, d, generator=gen, dtype=dtype)
    teacher_q, teacher_docs = torch.randn(n, d, generator=gen, dtype=dtype), torch.randn((1 + k) * n, d, generator=gen, dtype=dtype)
    return queries, docs, teacher_q, teacher_docs


def naive_margin_mse(q, docs, tq, tdocs, similarity):
    n = len(q)
    sim = (lambda x, y: x @ y) if similarity == "dot" else (lambda x, y: F.cosine_similarity(x, y, dim=0))
    terms = []
    for i in range(n):
        for j in range(1, len(docs) // n):
            student = sim(q[i], docs[i]) - sim(q[i], docs[j * n + i])
            teacher = sim(tq[i], tdocs[i]) - sim(tq[i], tdocs[j * n + i])
            terms.append((student - teacher) ** 2)
    return torch.stack(terms).mean()


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
@pytest.mark.parametrize("k", [1, 3])
def test_matches_naive_reference(similarity, k):
    q, docs, tq, tdocs = triplets(k=k)
    ours = MarginMSELoss(similarity=similarity)(q, ref_embeddings=docs, teacher_embeddings=tq, teacher_ref_embeddings=tdocs)
    torch.testing.assert_close(ours, naive_margin_mse(q, docs, tq, tdocs, similarity))


@pytest.mark.parametrize("k", [1, 3])
def test_matches_sentence_transformers_forward_and_backward(k):
    q, docs, tq, tdocs = triplets(n=8, k=k, d=12, seed=1)
    loss = MarginMSELoss(similarity="cosine")
    teacher_margins = loss.margins(tq, tdocs)
    st = STMarginMSELoss(model=None, similarity_fct=pairwise_cos_sim)
    assert_same_value_and_gradients(
        lambda x, y: loss(x, ref_embeddings=y, teacher_embeddings=tq, teacher_ref_embeddings=tdocs),
        lambda x, y: st.compute_loss_from_embeddings([x, *y.split(8)],
                                                     teacher_margins.squeeze(1) if k == 1 else teacher_margins),
        q, docs)


def test_precomputed_margins_equal_teacher_embeddings():
    q, docs, tq, tdocs = triplets()
    loss = MarginMSELoss()
    from_embeddings = loss(q, ref_embeddings=docs, teacher_embeddings=tq, teacher_ref_embeddings=tdocs)
    torch.testing.assert_close(loss(q, ref_embeddings=docs, teacher_margins=loss.margins(tq, tdocs)), from_embeddings)


def test_student_closer_to_the_teacher_lowers_the_loss():
    q, docs, tq, tdocs = triplets()
    values = [MarginMSELoss()(tq + noise * q, ref_embeddings=tdocs + noise * docs, teacher_embeddings=tq,
                              teacher_ref_embeddings=tdocs).item() for noise in (1.0, 0.5, 0.1)]
    assert values[0] > values[1] > values[2]


def test_bad_inputs():
    q, docs, tq, tdocs = triplets()
    with pytest.raises(ValueError, match="at least one negative"):
        MarginMSELoss()(q, ref_embeddings=docs[:5], teacher_embeddings=tq, teacher_ref_embeddings=tdocs[:5])
    with pytest.raises(ValueError, match="multiple of 5"):
        MarginMSELoss()(q, ref_embeddings=docs[:7], teacher_embeddings=tq, teacher_ref_embeddings=tdocs[:7])
    with pytest.raises(ValueError, match="similarity"):
        MarginMSELoss(similarity="euclid")


def test_raw_teacher_scores_match_sentence_transformers_labels():
    # ST's labels may be the margins (N, k) or the raw scores of positive and negatives (N, 1 + k).
    q, docs, tq, tdocs = triplets(n=6, k=2, seed=3)
    raw = torch.randn(6, 3, generator=torch.Generator().manual_seed(4))
    ours = MarginMSELoss()(q, ref_embeddings=docs, teacher_scores=raw)
    theirs = STMarginMSELoss(model=None).compute_loss_from_embeddings([q, *docs.split(6)], raw)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(MarginMSELoss()(q, ref_embeddings=docs, teacher_scores=raw[:, :1] - raw[:, 1:]), ours)
