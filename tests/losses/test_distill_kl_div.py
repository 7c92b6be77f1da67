from __future__ import annotations

import warnings

import pytest
import torch
from pair_checks import assert_same_value_and_gradients
from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss as STDistillKLDivLoss
from sentence_transformers.util import pairwise_cos_sim

from textdml.losses.distill_kl_div import DistillKLDivLoss


def triplets(n=5, k=2, d=8, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(size, d, generator=gen, dtype=dtype) for size in (n, (1 + k) * n, n, (1 + k) * n)]


def naive_kl(q, docs, tq, tdocs, t_student=1.0, t_teacher=1.0):
    n, total = len(q), 0.0
    for i in range(n):
        rows = range(i, len(docs), n)
        s = torch.stack([q[i] @ docs[r] for r in rows]) / t_student
        t = torch.stack([tq[i] @ tdocs[r] for r in rows]) / t_teacher
        p_t, log_p_s = torch.softmax(t, 0), torch.log_softmax(s, 0)
        total = total + sum(p_t[c] * (torch.log(p_t[c]) - log_p_s[c]) for c in range(len(s)))
    return total / n * t_student**2


@pytest.mark.parametrize("temps", [(1.0, 1.0), (2.0, 0.5)])
def test_matches_naive_reference(temps):
    q, docs, tq, tdocs = triplets(k=3)
    loss = DistillKLDivLoss(student_temperature=temps[0], teacher_temperature=temps[1])
    ours = loss(q, ref_embeddings=docs, teacher_embeddings=tq, teacher_ref_embeddings=tdocs)
    torch.testing.assert_close(ours, naive_kl(q, docs, tq, tdocs, *temps))


def test_matches_sentence_transformers_forward_and_backward():
    q, docs, tq, tdocs = triplets(n=8, k=3, d=12, seed=1)
    loss = DistillKLDivLoss(similarity="cosine", temperature=0.5)
    teacher_scores = loss.scores(tq, tdocs)
    st = STDistillKLDivLoss(model=None, similarity_fct=pairwise_cos_sim, temperature=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its one-off check of the teacher's score scale
        assert_same_value_and_gradients(
            lambda x, y: loss(x, ref_embeddings=y, teacher_embeddings=tq, teacher_ref_embeddings=tdocs),
            lambda x, y: st.compute_loss_from_embeddings([x, *y.split(8)], teacher_scores), q, docs)


def test_the_teacher_itself_has_zero_loss_and_noise_raises_it():
    q, docs, tq, tdocs = triplets()
    loss = DistillKLDivLoss()
    values = [loss(tq + noise * q, ref_embeddings=tdocs + noise * docs, teacher_embeddings=tq,
                   teacher_ref_embeddings=tdocs).item() for noise in (0.0, 0.3, 1.0)]
    assert abs(values[0]) < 1e-6 and values[0] < values[1] < values[2]


def test_precomputed_teacher_scores():
    q, docs, tq, tdocs = triplets()
    loss = DistillKLDivLoss()
    torch.testing.assert_close(loss(q, ref_embeddings=docs, teacher_scores=loss.scores(tq, tdocs)),
                               loss(q, ref_embeddings=docs, teacher_embeddings=tq, teacher_ref_embeddings=tdocs))


def test_bad_inputs():
    q, docs, tq, tdocs = triplets()
    with pytest.raises(ValueError, match="at least one negative"):
        DistillKLDivLoss()(q, ref_embeddings=docs[:5], teacher_embeddings=tq, teacher_ref_embeddings=tdocs[:5])
    with pytest.raises(ValueError, match="temperature"):
        DistillKLDivLoss(temperature=0)
    with pytest.raises(ValueError, match=r"\(N, 1 \+ k\)"):
        DistillKLDivLoss()(q, ref_embeddings=docs, teacher_scores=torch.randn(5, 2))
