from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses

from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.tuplet_margin import TupletMarginLoss
from textdml.miners.base import PairIndices, all_pairs
from textdml.registry import LOSSES

LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3])
REF_LABELS = torch.tensor([0, 1, 1, 2, 3, 3, 4])


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def mined_pairs(labels: torch.Tensor, seed: int = 0) -> PairIndices:
    """A random subset of all pairs that keeps one positive and one negative for every anchor."""
    pairs = all_pairs(labels)
    generator = torch.Generator().manual_seed(seed)

    def keep(anchor: torch.Tensor) -> torch.Tensor:
        first_of_anchor = torch.ones(len(anchor), dtype=torch.bool)
        first_of_anchor[1:] = anchor[1:] != anchor[:-1]
        return (torch.rand(len(anchor), generator=generator) < 0.5) | first_of_anchor

    pos, neg = keep(pairs.anchor_pos), keep(pairs.anchor_neg)
    return PairIndices(pairs.anchor_pos[pos], pairs.positive[pos], pairs.anchor_neg[neg], pairs.negative[neg])


def naive_tuplet_margin(x, labels, ref=None, ref_labels=None, margin_degrees=5.73, scale=64.0):
    same_set = ref is None
    ref, ref_labels = (x, labels) if same_set else (ref, ref_labels)
    cos = lambda u, v: F.cosine_similarity(u, v, dim=0)  # noqa: E731
    losses = []
    for a in range(len(x)):
        for p in range(len(ref)):
            if ref_labels[p] != labels[a] or (same_set and p == a):
                continue
            shifted = torch.cos(torch.acos(cos(x[a], ref[p])) - math.radians(margin_degrees))
            total = torch.ones((), dtype=x.dtype)
            for n in range(len(ref)):
                if ref_labels[n] != labels[a]:
                    total = total + torch.exp(scale * (cos(x[a], ref[n]) - shifted))
            losses.append(torch.log(total))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_naive_reference(use_ref: bool) -> None:
    x = randn(8, 5).requires_grad_()
    ref = randn(7, 5, seed=1).requires_grad_() if use_ref else None
    loss_fn = TupletMarginLoss(margin=10.0, scale=8.0)
    kwargs = dict(ref_embeddings=ref, ref_labels=REF_LABELS) if use_ref else {}
    ours = loss_fn(x, LABELS, **kwargs)
    expected = naive_tuplet_margin(x, LABELS, ref, REF_LABELS if use_ref else None, 10.0, 8.0)
    torch.testing.assert_close(ours, expected)
    inputs = [x] if ref is None else [x, ref]
    for got, want in zip(torch.autograd.grad(ours, inputs), torch.autograd.grad(expected, inputs), strict=True):
        torch.testing.assert_close(got, want)


def test_direction_closer_positives_lower_the_loss() -> None:
    centres, noise = randn(4, 16), randn(8, 16, seed=1)
    loss_fn = TupletMarginLoss(scale=16.0)
    assert loss_fn(centres[LABELS] + 0.3 * noise, LABELS) < loss_fn(centres[LABELS] + 1.0 * noise, LABELS)


def test_bfloat16_close_to_float32() -> None:
    x = randn(8, 16).float()
    loss_fn = TupletMarginLoss()
    full, half = loss_fn(x, LABELS), loss_fn(x.bfloat16(), LABELS)
    assert half.dtype == torch.float32 and torch.isfinite(half)
    torch.testing.assert_close(half, full, rtol=5e-2, atol=5e-2)


def test_gradcheck() -> None:
    x = randn(6, 4).requires_grad_()
    loss_fn = TupletMarginLoss(scale=4.0)
    assert torch.autograd.gradcheck(lambda e: loss_fn(e, torch.tensor([0, 0, 1, 1, 2, 2])), (x,))


@pytest.mark.parametrize(
    "labels", [torch.zeros(6, dtype=torch.long), torch.arange(6)], ids=["one_class", "no_positive"]
)
def test_degenerate_batch_warns_and_is_zero(labels: torch.Tensor) -> None:
    x = randn(6, 4).requires_grad_()
    with pytest.warns(DegenerateBatchWarning):
        loss = TupletMarginLoss()(x, labels)
    assert loss.item() == 0
    loss.backward()
    assert torch.all(x.grad == 0)


def test_identical_embeddings_give_finite_loss_and_gradient() -> None:
    # cos = 1 is where acos has an infinite slope: the clip keeps the gradient finite.
    x = torch.ones(6, 4, requires_grad=True)
    loss = TupletMarginLoss()(x, torch.tensor([0, 0, 1, 1, 2, 2]))
    loss.backward()
    assert torch.isfinite(loss) and loss > 0 and torch.isfinite(x.grad).all()


def test_registered() -> None:
    assert LOSSES.get("tuplet_margin") is TupletMarginLoss


@pytest.mark.parametrize("case", ["same_set", "ref", "mined"])
def test_matches_pml(case: str) -> None:
    x = randn(8, 5)
    ref = randn(7, 5, seed=1) if case == "ref" else None
    ours_fn, pml_fn = TupletMarginLoss(margin=5.73, scale=16.0), pml_losses.TupletMarginLoss(margin=5.73, scale=16.0)
    ours_x, pml_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    if case == "ref":
        ours = ours_fn(ours_x, LABELS, ref_embeddings=ref, ref_labels=REF_LABELS)
        theirs = pml_fn(pml_x, LABELS, ref_emb=ref, ref_labels=REF_LABELS)
    else:
        mined = mined_pairs(LABELS) if case == "mined" else None
        pml_mined = None if mined is None else (mined.anchor_pos, mined.positive, mined.anchor_neg, mined.negative)
        ours, theirs = ours_fn(ours_x, LABELS, indices=mined), pml_fn(pml_x, LABELS, indices_tuple=pml_mined)
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours_x.grad, pml_x.grad)
