from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers.sentence_transformer.losses import CoSENTLoss as STCoSENTLoss

from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.cosent import CoSENTLoss
from textdml.registry import LOSSES


def naive_cosent(a, b, scores, scale=20.0):
    """Double loop over every two pairs whose gold scores differ."""
    cos = [F.cosine_similarity(a[i], b[i], dim=0) for i in range(len(a))]
    total = torch.ones((), dtype=a.dtype)
    for i in range(len(a)):
        for j in range(len(a)):
            if scores[i] > scores[j]:
                total = total + torch.exp(scale * (cos[j] - cos[i]))
    return torch.log(total)


def scored_batch(n=10, d=8, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, d, generator=gen, dtype=dtype), torch.randn(n, d, generator=gen, dtype=dtype)
    scores = torch.rand(n, generator=gen, dtype=dtype) * 2 - 1
    scores[n // 2] = scores[n - 1]  # a tie: contributes nothing
    return a, b, scores


def test_registered():
    assert LOSSES.get("cosent") is CoSENTLoss


@pytest.mark.parametrize("scale", [1.0, 20.0])
def test_matches_naive_reference(scale):
    a, b, scores = scored_batch()
    torch.testing.assert_close(CoSENTLoss(scale)(a, scores, ref_embeddings=b), naive_cosent(a, b, scores, scale))


def test_matches_sentence_transformers_forward_and_backward():
    a, b, scores = scored_batch(n=32, d=16, seed=1)
    ours_a, ours_b = a.clone().requires_grad_(), b.clone().requires_grad_()
    theirs_a, theirs_b = a.clone().requires_grad_(), b.clone().requires_grad_()
    ours = CoSENTLoss()(ours_a, scores, ref_embeddings=ours_b)
    theirs = STCoSENTLoss(model=None).compute_loss_from_embeddings([theirs_a, theirs_b], scores)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(ours_a.grad, theirs_a.grad)
    torch.testing.assert_close(ours_b.grad, theirs_b.grad)


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


def test_bfloat16_close_to_float32():
    a, b, scores = scored_batch(n=16, d=16)
    a16 = a.bfloat16().requires_grad_()
    value = CoSENTLoss(scale=5.0)(a16, scores, ref_embeddings=b.bfloat16())
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(a16.grad.float()).all()
    torch.testing.assert_close(value, CoSENTLoss(scale=5.0)(a, scores, ref_embeddings=b), rtol=0.05, atol=0.05)


def test_gradcheck():
    a, b, scores = scored_batch(n=6, d=4, dtype=torch.float64)
    loss = CoSENTLoss(scale=2.0)
    assert torch.autograd.gradcheck(lambda x, y: loss(x, scores, ref_embeddings=y),
                                    (a.requires_grad_(), b.requires_grad_()))


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
