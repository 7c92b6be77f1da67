from __future__ import annotations

import pytest
import torch
from pair_checks import assert_same_value_and_gradients, naive_ranking_loss
from sentence_transformers.sentence_transformer.losses import AnglELoss as STAnglELoss
from sentence_transformers.util import pairwise_angle_sim

from textdml.losses.angle import AnglELoss, angle_similarity


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
    return naive_ranking_loss([naive_angle_similarity(a[i], b[i]) for i in range(len(a))], scores, scale)


def scored_batch(n=10, d=8, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=gen, dtype=dtype), torch.randn(n, d, generator=gen, dtype=dtype),
            torch.rand(n, generator=gen, dtype=dtype))


@pytest.mark.parametrize("dim", [8, 7])
def test_similarity_matches_sentence_transformers(dim):
    a, b, _ = scored_batch(d=dim)
    torch.testing.assert_close(angle_similarity(a, b), pairwise_angle_sim(a, b))


def test_matches_naive_reference():
    a, b, scores = scored_batch()
    torch.testing.assert_close(AnglELoss()(a, scores, ref_embeddings=b), naive_angle(a, b, scores))


@pytest.mark.parametrize("dim", [16, 15])
def test_matches_sentence_transformers_forward_and_backward(dim):
    a, b, scores = scored_batch(n=32, d=dim, seed=1)
    assert_same_value_and_gradients(lambda x, y: AnglELoss()(x, scores, ref_embeddings=y),
                                    lambda x, y: STAnglELoss(model=None).compute_loss_from_embeddings([x, y], scores),
                                    a, b)


def test_scores_that_agree_with_the_similarities_give_a_lower_loss():
    a, b, _ = scored_batch(n=8)
    ranks = angle_similarity(a, b).argsort().argsort().float() / 7  # gold order = similarity order
    agree = AnglELoss(scale=5.0)(a, ranks, ref_embeddings=b)
    partly = AnglELoss(scale=5.0)(a, ranks.roll(3), ref_embeddings=b)
    disagree = AnglELoss(scale=5.0)(a, 1 - ranks, ref_embeddings=b)
    assert agree < partly < disagree


def test_a_score_outside_the_range_names_the_range():
    a, b, scores = scored_batch(n=4)
    scores[1] = 4.0
    with pytest.raises(ValueError, match=r"pair 1 .*outside the loss's range \[-1, 1\]"):
        AnglELoss()(a, scores, ref_embeddings=b)
