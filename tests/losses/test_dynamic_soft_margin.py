from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses

from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.dynamic_soft_margin import DynamicSoftMarginLoss
from textdml.miners.base import TripletIndices


def dist(a, b):
    return float((F.normalize(a, dim=0) - F.normalize(b, dim=0)).norm())


def naive_weighted_mean(margins, histogram, min_val=-2.0, num_bins=10, momentum=0.01):
    """The histogram update and the CDF weights written out, one margin at a time."""
    delta = 2 * abs(min_val) / num_bins
    momentum = momentum if sum(histogram) != 0 else 1.0
    new = [(1 - momentum) * h for h in histogram]
    for x in margins:
        position = (x - min_val) / delta
        b = min(max(math.floor(position), 0), num_bins - 1)
        fraction = position - math.floor(position)
        new[b] += momentum * (1 - fraction)
        new[min(b + 1, num_bins - 1)] += momentum * fraction
    total = sum(new)
    new = [h / total for h in new]
    cdf = [sum(new[: k + 1]) for k in range(num_bins)]
    weights = [cdf[min(max(math.floor((x - min_val) / delta), 0), num_bins - 1)] for x in margins]
    return sum(w * x for w, x in zip(weights, margins, strict=True)) / len(margins), new


def naive_triplet_margins(x, labels, ref=None, ref_labels=None):
    same_set = ref is None
    ref, ref_labels = (x, labels) if same_set else (ref, ref_labels)
    margins = []
    for a in range(len(x)):
        for p in range(len(ref)):
            if ref_labels[p] != labels[a] or (same_set and p == a):
                continue
            for n in range(len(ref)):
                if ref_labels[n] != labels[a]:
                    margins.append(dist(x[a], ref[p]) - dist(x[a], ref[n]))
    return margins


def naive_hardest_margins(x, ref):
    n = len(x)
    margins = []
    for i in range(n):
        row = [dist(x[i], ref[j]) for j in range(len(ref)) if j != i]
        column = [dist(x[k], ref[i]) for k in range(n) if k != i]
        margins.append(dist(x[i], ref[i]) - min(row + column))
    return margins


@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_naive_reference_over_two_steps(use_ref):
    torch.manual_seed(0)
    loss = DynamicSoftMarginLoss(momentum=0.3)
    histogram = [0.0] * 10
    for step in range(2):
        x, labels = torch.randn(8, 5, dtype=torch.float64), torch.randint(0, 3, (8,))
        ref, ref_labels = (torch.randn(6, 5, dtype=torch.float64), torch.randint(0, 3, (6,))) if use_ref else (None, None)
        value = loss(x, labels, ref_embeddings=ref, ref_labels=ref_labels)
        expected, histogram = naive_weighted_mean(naive_triplet_margins(x, labels, ref, ref_labels), histogram,
                                                  momentum=0.3)
        assert math.isclose(value.item(), expected, rel_tol=1e-9, abs_tol=1e-12), step
        torch.testing.assert_close(loss.histogram, torch.tensor(histogram, dtype=torch.float32))


def test_pairs_by_position_use_the_hardest_negative():
    torch.manual_seed(0)
    x, ref = torch.randn(6, 5, dtype=torch.float64), torch.randn(9, 5, dtype=torch.float64)
    value = DynamicSoftMarginLoss()(x, ref_embeddings=ref)
    expected, _ = naive_weighted_mean(naive_hardest_margins(x, ref), [0.0] * 10)
    assert math.isclose(value.item(), expected, rel_tol=1e-9)


def naive_hardest_labelled_margins(x, labels):
    margins = []
    for a in range(len(x)):
        for p in range(len(x)):
            if p == a or labels[p] != labels[a]:
                continue
            row = [dist(x[a], x[n]) for n in range(len(x)) if labels[n] != labels[a]]
            column = [dist(x[k], x[p]) for k in range(len(x)) if labels[k] != labels[p]]
            if row or column:
                margins.append(dist(x[a], x[p]) - min(row + column))
    return margins


def test_hardest_negatives_on_labelled_rows():
    torch.manual_seed(0)
    x, labels = torch.randn(9, 5, dtype=torch.float64), torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    value = DynamicSoftMarginLoss(negatives="hardest")(x, labels)
    expected, _ = naive_weighted_mean(naive_hardest_labelled_margins(x, labels), [0.0] * 10)
    assert math.isclose(value.item(), expected, rel_tol=1e-9)
    # Pair labels with negatives="hardest" are the same as pairs by position.
    ref = torch.randn(9, 5, dtype=torch.float64)
    torch.testing.assert_close(
        DynamicSoftMarginLoss(negatives="hardest")(x, torch.arange(9), ref_embeddings=ref, ref_labels=torch.arange(9)),
        DynamicSoftMarginLoss()(x, ref_embeddings=ref))
    with pytest.raises(ValueError, match="remove the miner"):
        DynamicSoftMarginLoss(negatives="hardest")(x, labels, indices=TripletIndices(*torch.tensor([[0], [1], [3]])))


def test_a_descent_step_moves_positives_closer_than_negatives():
    torch.manual_seed(0)
    x, labels = torch.randn(12, 8), torch.arange(12) % 3
    loss = DynamicSoftMarginLoss()

    def mean_margin(e):
        return float(torch.tensor(naive_triplet_margins(e, labels)).mean())

    x.requires_grad_()
    loss(x, labels).backward()
    stepped = (x - 0.5 * x.grad).detach()
    assert mean_margin(stepped) < mean_margin(x.detach())


def test_eval_mode_keeps_the_histogram():
    loss = DynamicSoftMarginLoss().eval()
    loss(torch.randn(8, 4), torch.arange(8) % 2)
    assert loss.histogram.sum() == 0
    state = copy.deepcopy(loss.train())
    state(torch.randn(8, 4), torch.arange(8) % 2)
    restored = DynamicSoftMarginLoss()
    restored.load_state_dict(state.state_dict())
    torch.testing.assert_close(restored.histogram, state.histogram)


def test_gradcheck():
    torch.manual_seed(0)
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    loss = DynamicSoftMarginLoss()
    assert torch.autograd.gradcheck(lambda e: loss.train(False)(e, labels), (x,))


@pytest.mark.parametrize("labels", [[0], [0, 1, 2, 3]], ids=["one_row", "no_positive"])
def test_no_triplet_warns_and_is_zero(labels):
    x = torch.randn(len(labels), 4, requires_grad=True)
    with pytest.warns(DegenerateBatchWarning):
        value = DynamicSoftMarginLoss()(x, torch.tensor(labels))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(x.grad).all()


def test_identical_embeddings_and_extreme_margins_are_finite():
    x = torch.ones(6, 4, requires_grad=True)
    value = DynamicSoftMarginLoss()(x, torch.tensor([0, 0, 1, 1, 2, 2]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()
    # Positives opposite, negatives equal: margins of 2, the top of the range (PML: index error).
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]])
    value = DynamicSoftMarginLoss()(x, torch.tensor([0, 0, 1]))
    assert torch.isfinite(value)


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="euclidean"):
        DynamicSoftMarginLoss(distance="cosine_similarity")
    with pytest.raises(ValueError, match="min_val"):
        DynamicSoftMarginLoss(min_val=1.0)
    with pytest.raises(ValueError, match="negatives"):
        DynamicSoftMarginLoss(negatives="semi")


@pytest.mark.parametrize("mode", ["labels", "mined", "by_position"])
def test_parity_with_pml(mode):
    torch.manual_seed(1)
    x = torch.randn(16, 8, requires_grad=True)
    labels = torch.randint(0, 4, (16,))
    ours, theirs = DynamicSoftMarginLoss(), pml_losses.DynamicSoftMarginLoss()
    if mode == "by_position":
        # Forward only: PML 2.9.0 fills the distance matrix's diagonal in place, so its backward fails.
        ref = torch.randn(16, 8)
        with torch.no_grad():
            torch.testing.assert_close(ours(x, ref_embeddings=ref), theirs(x, None, None, ref))
        torch.testing.assert_close(ours.histogram, theirs.hist_)
        return
    if mode == "mined":
        indices = TripletIndices(torch.tensor([0, 1, 2, 3]), torch.tensor([5, 6, 7, 8]), torch.tensor([9, 10, 11, 12]))
        labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11])
        value = ours(x, labels, indices=indices)
        expected = theirs(x, labels, (indices.anchor, indices.positive, indices.negative))
    else:
        value, expected = ours(x, labels), theirs(x, labels)
    (grad,) = torch.autograd.grad(value, x)
    (expected_grad,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grad, expected_grad)
    torch.testing.assert_close(ours.histogram, theirs.hist_.detach())
