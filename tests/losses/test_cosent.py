from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pair_checks import assert_same_value_and_gradients, naive_ranking_loss
from sentence_transformers.sentence_transformer.losses import CoSENTLoss as STCoSENTLoss

from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.cosent import CoSENTLoss


def naive_cosent(a, b, scores, scale=20.0):
    """Double loop over every two pairs whose gold scores differ."""
    return naive_ranking_loss([F.cosine_similarity(a[i], b[i], dim=0) for i in range(len(a))], scores, scale)


def scored_batch(n=10, d=8, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, d, generator=gen, dtype=dtype), torch.randn(n, d, generator=gen, dtype=dtype)
    scores = torch.rand(n, generator=gen, dtype=dtype) * 2 - 1
    scores[n // 2] = scores[n - 1]  # a tie: contributes nothing
    return a, b, scores


@pytest.mark.parametrize("scale", [1.0, 20.0])
def test_matches_naive_reference(scale):
    a, b, scores = scored_batch()
    torch.testing.assert_close(CoSENTLoss(scale)(a, scores, ref_embeddings=b), naive_cosent(a, b, scores, scale))


def test_matches_sentence_transformers_forward_and_backward():
    a, b, scores = scored_batch(n=32, d=16, seed=1)
    assert_same_value_and_gradients(lambda x, y: CoSENTLoss()(x, scores, ref_embeddings=y),
                                    lambda x, y: STCoSENTLoss(model=None).compute_loss_from_embeddings([x, y], scores),
                                    a, b)


def test_ordering_the_cosines_like_the_scores_lowers_the_loss():
    gen = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(6, 8, generator=gen), dim=-1)
    scores = torch.linspace(-1, 1, 6)
    noise = F.normalize(torch.randn(6, 8, generator=gen), dim=-1)
    values = []
    for mix in (0.0, 0.5, 1.0):  # mix=1: pair i's cosine grows with its score
        b = F.normalize(mix * scores[:, None] * a + (1 - mix) * noise + 0.3 * noise, dim=-1)
        values.append(CoSENTLoss()(a, scores, ref_embeddings=b).item())
    assert values[0] > values[1] > values[2]


def test_all_ties_warn_and_give_zero_with_a_graph():
    a, b, _ = scored_batch(n=4)
    a.requires_grad_()
    with pytest.warns(DegenerateBatchWarning, match="same score"):
        value = CoSENTLoss()(a, torch.full((4,), 0.5), ref_embeddings=b)
    value.backward()
    assert value.item() == 0.0 and not torch.isnan(a.grad).any()


def test_large_scale_stays_finite():
    a, b, scores = scored_batch(n=64)
    value = CoSENTLoss(scale=1e4)(a, scores, ref_embeddings=b)
    assert math.isfinite(value.item())


@pytest.mark.parametrize("bad", [1.5, -3.0, float("nan")])
def test_a_score_outside_the_range_names_the_range(bad):
    a, b, scores = scored_batch(n=4)
    scores[2] = bad
    with pytest.raises(ValueError, match=r"pair 2 .*outside the loss's range \[-1, 1\].*score_range"):
        CoSENTLoss()(a, scores, ref_embeddings=b)


def test_a_declared_range_accepts_its_scores():
    a, b, scores = scored_batch(n=8)
    sts = (scores + 1) * 2.5  # 0-5 like STS-B
    value = CoSENTLoss(score_range=[0, 5])(a, sts, ref_embeddings=b)
    torch.testing.assert_close(value, CoSENTLoss()(a, scores, ref_embeddings=b))  # only the order counts


@pytest.mark.parametrize("kwargs, match", [
    ({}, "takes scored pairs"),
    ({"ref_embeddings": torch.randn(3, 8)}, "one row per pair"),
])
def test_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CoSENTLoss()(torch.randn(4, 8), torch.rand(4), **kwargs)


def test_bad_arguments():
    with pytest.raises(ValueError, match="scale"):
        CoSENTLoss(scale=0)
    with pytest.raises(ValueError, match="score_range"):
        CoSENTLoss(score_range=(1, 0))
