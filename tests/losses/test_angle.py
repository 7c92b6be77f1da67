from __future__ import annotations

import pytest
import torch
from sentence_transformers.sentence_transformer.losses import AnglELoss as STAnglELoss
from sentence_transformers.util import pairwise_angle_sim

from textdml.losses.angle import AnglELoss, angle_similarity
from textdml.registry import LOSSES


def naive_angle_similarity(x, y):
    """The complex form of the authors' code: z = re + i*im per half, angle of the normalised quotient."""
    half = len(x) // 2
    zx = torch.complex(x[:half], x[half:])
    zy = torch.complex(y[:half], y[half:])
    # cos + sin term of L2-normalised vectors == Re(conj(zx) zy) + Im(zx conj(zy)) / norms
    norm = torch.linalg.vector_norm(x) * torch.linalg.vector_norm(y)
    real = (zx.conj() * zy).real.sum() / norm
    imag = (zx * zy.conj()).imag.sum() / norm
    return (real + imag).abs()


def naive_angle(a, b, scores, scale=20.0):
    sims = [naive_angle_similarity(a[i], b[i]) for i in range(len(a))]
    total = torch.ones((), dtype=a.dtype)
    for i in range(len(a)):
        for j in range(len(a)):
            if scores[i] > scores[j]:
                total = total + torch.exp(scale * (sims[j] - sims[i]))
    return torch.log(total)


def scored_batch(n=10, d=8, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=gen, dtype=dtype), torch.randn(n, d, generator=gen, dtype=dtype),
            torch.rand(n, generator=gen, dtype=dtype))


def test_registered():
    assert LOSSES.get("angle") is AnglELoss


@pytest.mark.parametrize("dim", [8, 7])
def test_similarity_matches_sentence_transformers(dim):
    a, b, _ = scored_batch(d=dim)
    torch.testing.assert_close(angle_similarity(a, b), pairwise_angle_sim(a, b))


def test_matches_naive_reference():
    a, b, scores = scored_batch()
    torch.testing.assert_close(AnglELoss()(a, scores, ref_embeddings=b), naive_angle(a, b, scores))


def test_matches_sentence_transformers_forward_and_backward():
    a, b, scores = scored_batch(n=32, d=16, seed=1)
    ours_a, ours_b = a.clone().requires_grad_(), b.clone().requires_grad_()
    theirs_a, theirs_b = a.clone().requires_grad_(), b.clone().requires_grad_()
    ours = AnglELoss()(ours_a, scores, ref_embeddings=ours_b)
    theirs = STAnglELoss(model=None).compute_loss_from_embeddings([theirs_a, theirs_b], scores)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(ours_a.grad, theirs_a.grad)
    torch.testing.assert_close(ours_b.grad, theirs_b.grad)


def test_scores_that_agree_with_the_similarities_give_a_lower_loss():
    a, b, _ = scored_batch(n=8)
    ranks = angle_similarity(a, b).argsort().argsort().float() / 7  # gold order = similarity order
    agree = AnglELoss(scale=5.0)(a, ranks, ref_embeddings=b)
    partly = AnglELoss(scale=5.0)(a, ranks.roll(3), ref_embeddings=b)
    disagree = AnglELoss(scale=5.0)(a, 1 - ranks, ref_embeddings=b)
    assert agree < partly < disagree


def test_bfloat16_close_to_float32():
    a, b, scores = scored_batch(n=16, d=16)
    a16 = a.bfloat16().requires_grad_()
    value = AnglELoss(scale=5.0)(a16, scores, ref_embeddings=b.bfloat16())
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(a16.grad.float()).all()
    torch.testing.assert_close(value, AnglELoss(scale=5.0)(a, scores, ref_embeddings=b), rtol=0.05, atol=0.05)


def test_gradcheck():
    a, b, scores = scored_batch(n=6, d=4, dtype=torch.float64)
    loss = AnglELoss(scale=2.0)
    assert torch.autograd.gradcheck(lambda x, y: loss(x, scores, ref_embeddings=y),
                                    (a.requires_grad_(), b.requires_grad_()))


def test_a_score_outside_the_range_names_the_range():
    a, b, scores = scored_batch(n=4)
    scores[1] = 4.0
    with pytest.raises(ValueError, match=r"pair 1 .*outside the loss's range \[-1, 1\]"):
        AnglELoss()(a, scores, ref_embeddings=b)
