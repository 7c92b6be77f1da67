from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pair_checks import assert_matches_naive, clustered_batch
from pytorch_metric_learning import losses as pml_losses

from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.ranked_list import RankedListLoss


def naive_ranked_list(x, labels, ref=None, ref_labels=None, margin=0.4, Tn=10.0, imbalance=0.5, alpha=None, Tp=0.0):
    """One anchor at a time, on euclidean distance between L2-normalised rows."""
    alpha = 1 + margin / 2 if alpha is None else alpha
    same_set = ref is None
    ref, ref_labels = (x, labels) if same_set else (ref, ref_labels)
    losses = []
    for i in range(len(x)):
        pos_num = pos_den = neg_num = neg_den = 0.0
        for j in range(len(ref)):
            if same_set and i == j:
                continue
            d = (F.normalize(x[i], dim=0) - F.normalize(ref[j], dim=0)).norm()
            if labels[i] == ref_labels[j] and d > alpha - margin:
                w = torch.exp(Tp * (d - (alpha - margin)))
                pos_num, pos_den = pos_num + w * (d - (alpha - margin)), pos_den + w
            elif labels[i] != ref_labels[j] and d < alpha:
                w = torch.exp(Tn * (alpha - d))
                neg_num, neg_den = neg_num + w * (alpha - d), neg_den + w
        eps = 1e-5 * len(ref)
        losses.append((1 - imbalance) * pos_num / (pos_den + eps) + imbalance * neg_num / (neg_den + eps))
    return torch.stack([torch.as_tensor(v, dtype=x.dtype) for v in losses]).mean()


@pytest.mark.parametrize("use_ref", [False, True])
@pytest.mark.parametrize("params", [dict(margin=0.4, Tn=10.0), dict(margin=0.8, Tn=2.0, imbalance=0.3, alpha=1.3, Tp=1.5)])
def test_matches_naive_reference(use_ref, params):
    assert_matches_naive(RankedListLoss(**params), lambda *rows: naive_ranked_list(*rows, **params), use_ref,
                         dtype=torch.float64)


def test_moving_positives_closer_lowers_the_loss():
    loss = RankedListLoss(imbalance=0.0)  # the positive term alone: negatives stay beyond alpha here
    values = [loss(*clustered_batch(noise)).item() for noise in (1.0, 0.5, 0.2)]
    assert values[0] > values[1] > values[2]


def test_no_pair_warns_and_is_zero():
    x = torch.randn(1, 4, requires_grad=True)
    with pytest.warns(DegenerateBatchWarning):
        value = RankedListLoss()(x, torch.tensor([0]))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("labels", [[0, 0, 0, 0], [0, 1, 2, 3]], ids=["one_class", "no_positive"])
def test_one_sided_batches_are_finite(labels):
    x = torch.randn(4, 5, requires_grad=True)
    value = RankedListLoss()(x, torch.tensor(labels))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()


def test_identical_embeddings_are_finite():
    x = torch.ones(6, 4, requires_grad=True)
    value = RankedListLoss()(x, torch.tensor([0, 0, 1, 1, 2, 2]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()
    # Every negative sits at distance 0 < alpha: the negative term is (nearly) alpha.
    assert math.isclose(value.item(), 0.5 * 1.2, rel_tol=1e-3)


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="imbalance"):
        RankedListLoss(imbalance=1.5)
    with pytest.raises(ValueError, match="similarity"):
        RankedListLoss(distance="cosine_similarity")


@pytest.mark.parametrize("params", [dict(margin=0.4, Tn=10.0), dict(margin=0.8, Tn=2.0, imbalance=0.3, Tp=1.5)])
def test_parity_with_pml(params):
    torch.manual_seed(1)
    x = torch.randn(16, 8, requires_grad=True)
    labels = torch.randint(0, 4, (16,))
    value = RankedListLoss(**params)(x, labels)
    (grad,) = torch.autograd.grad(value, x)
    expected = pml_losses.RankedListLoss(**params)(x, labels)
    (expected_grad,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grad, expected_grad)
