from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pair_checks import assert_matches_naive
from pytorch_metric_learning import losses as pml_losses

from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.pnp import VARIANTS, PNPLoss


def penalty(rank, variant, b, alpha):
    return {
        "O": rank,
        "Ds": math.log(1 + rank),
        "Dq": 1 / (1 + rank) ** alpha,
        "Iu": (1 + rank) * math.log(1 + rank),
        "Ib": (b * rank - math.log(1 + b * rank)) / b**2,
    }[variant]


def naive_pnp(x, labels, ref=None, ref_labels=None, variant="O", anneal=0.01, b=2.0, alpha=1.0):
    """One (anchor, positive) pair at a time; without ref the anchor is one of its own positives."""
    same_set = ref is None
    ref, ref_labels = (x, labels) if same_set else (ref, ref_labels)

    def sim(i, j):
        return float(F.cosine_similarity(x[i], ref[j], dim=0))

    anchor_losses = []
    for i in range(len(x)):
        positives = [j for j in range(len(ref)) if ref_labels[j] == labels[i] and not (same_set and j == i)]
        if not positives:
            continue
        if same_set:
            positives.append(i)
        negatives = [j for j in range(len(ref)) if ref_labels[j] != labels[i]]
        total = 0.0
        for p in positives:
            rank = sum(1 / (1 + math.exp(-max(-50.0, min(50.0, (sim(i, n) - sim(i, p)) / anneal))))
                       for n in negatives)
            total += penalty(rank, variant, b, alpha)
        anchor_losses.append(total / len(positives))
    loss = sum(anchor_losses) / len(anchor_losses)
    return 1 - loss if variant == "Dq" else loss


@pytest.mark.parametrize("use_ref", [False, True])
@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_naive_reference(use_ref, variant):
    assert_matches_naive(PNPLoss(variant=variant, anneal=0.1, b=3.0, alpha=2.0),
                         lambda *rows: naive_pnp(*rows, variant, anneal=0.1, b=3.0, alpha=2.0), use_ref,
                         dtype=torch.float64, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("labels", [[0], [0, 1, 2, 3]], ids=["one_row", "no_positive"])
def test_no_positive_warns_and_is_zero(labels):
    x = torch.randn(len(labels), 4, requires_grad=True)
    with pytest.warns(DegenerateBatchWarning):
        value = PNPLoss()(x, torch.tensor(labels))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(x.grad).all()


def test_identical_embeddings_are_finite():
    x = torch.ones(6, 4, requires_grad=True)
    value = PNPLoss()(x, torch.tensor([0, 0, 1, 1, 2, 2]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="variant"):
        PNPLoss(variant="X")
    with pytest.raises(ValueError, match="distance"):
        PNPLoss(distance="lp")


@pytest.mark.parametrize("variant", VARIANTS)
def test_parity_with_pml(variant):
    torch.manual_seed(1)
    x = torch.randn(16, 8, requires_grad=True)
    labels = torch.randint(0, 4, (16,))
    labels[-1] = 9  # an anchor without a positive
    value = PNPLoss(variant=variant, anneal=0.05)(x, labels)
    (grad,) = torch.autograd.grad(value, x)
    expected = pml_losses.PNPLoss(variant=variant, anneal=0.05)(x, labels)
    (expected_grad,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grad, expected_grad)
