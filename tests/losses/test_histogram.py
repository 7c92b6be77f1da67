from __future__ import annotations

import warnings

import pytest
import torch
from pair_checks import clustered_batch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from tests.miners.miner_checks import random_batch, random_ref_batch
from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.histogram import HistogramLoss
from textdml.miners.base import PairIndices, TripletIndices


def naive_histogram(x, labels, ref=None, ref_labels=None, n_bins=100):
    """Histogram loss with one triangular kernel per node and pair (the paper's Eq. 2-4)."""
    same_set = ref is None
    ref, ref_labels = (x, labels) if same_set else (ref, ref_labels)
    pos, neg = [], []
    for i in range(len(x)):
        for j in range(i + 1 if same_set else 0, len(ref)):
            s = torch.nn.functional.cosine_similarity(x[i], ref[j], dim=0)
            (pos if labels[i] == ref_labels[j] else neg).append(s)
    delta = 2.0 / n_bins
    nodes = [-1 + r * delta for r in range(n_bins + 1)]

    def density(values):
        return [sum(torch.relu(1 - (s - t).abs() / delta) for s in values) / len(values) for t in nodes]

    h_pos, h_neg = density(pos), density(neg)
    return sum(h_neg[r] * sum(h_pos[: r + 1]) for r in range(len(nodes)))


@pytest.mark.parametrize("n_bins", [100, 7])
def test_matches_naive_reference(n_bins):
    x, labels = random_batch(n=9, dim=4, num_classes=3)
    labels[-1] = 8  # a row without a positive: its negative pairs still count
    torch.testing.assert_close(HistogramLoss(n_bins)(x, labels), naive_histogram(x, labels, n_bins=n_bins))


def test_matches_naive_reference_with_ref_embeddings():
    x, labels, ref, ref_labels = random_ref_batch()
    got = HistogramLoss(20)(x, labels, ref_embeddings=ref, ref_labels=ref_labels)
    torch.testing.assert_close(got, naive_histogram(x, labels, ref, ref_labels, n_bins=20))


def test_mined_pairs_are_the_pairs_of_their_triplets():
    x, labels = random_batch(n=8, dim=4, num_classes=2)
    # Triplets (0, 2, 1) and (2, 0, 1): one positive pair {0, 2}, negative pairs {0, 1} and {2, 1}.
    indices = TripletIndices(torch.tensor([0, 2]), torch.tensor([2, 0]), torch.tensor([1, 1]))
    keep = [0, 1, 2]
    expected = naive_histogram(x[keep], labels[keep], n_bins=10)
    torch.testing.assert_close(HistogramLoss(10)(x, labels, indices=indices), expected)


def test_moving_positives_closer_lowers_the_loss():
    loss = HistogramLoss(20)
    values = [loss(*clustered_batch(noise)).item() for noise in (1.0, 0.6, 0.3)]
    assert values[0] > values[1] > values[2]


@pytest.mark.parametrize("use_ref", [False, True])
def test_gradcheck(use_ref):
    x, labels, ref, ref_labels = random_ref_batch()
    ref, ref_labels = (ref, ref_labels) if use_ref else (None, None)
    loss = HistogramLoss(n_bins=10)
    assert torch.autograd.gradcheck(
        lambda e: loss(e, labels, ref_embeddings=ref, ref_labels=ref_labels), (x.requires_grad_(),)
    )


@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [0, 0, 0], [0]], ids=["no_positive", "one_class", "single_row"])
def test_one_sided_batches_warn_and_are_zero(labels):
    x = torch.randn(len(labels), 4, requires_grad=True)
    with pytest.warns(DegenerateBatchWarning, match="positive and a negative"):
        value = HistogramLoss()(x, torch.tensor(labels))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(x.grad).all()


def test_empty_mined_tuples_warn():
    x, labels = random_batch(n=6, dim=4)
    empty = torch.zeros(0, dtype=torch.long)
    with pytest.warns(DegenerateBatchWarning):
        HistogramLoss()(x, labels, indices=PairIndices(empty, empty, empty, empty))


@pytest.mark.parametrize("batch", ["identical", "zero_rows", "antipodal"])
def test_similarities_at_the_ends_are_finite(batch):
    # Cosine exactly 1 or -1: the two end nodes (PML indexes past its histogram at 1).
    x, labels = random_batch(n=6, dim=4, num_classes=2, dtype=torch.float32)
    if batch == "identical":
        x = torch.ones(6, 4)
    elif batch == "zero_rows":
        x = torch.zeros(6, 4)
    else:
        x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]]).repeat(3, 1)
        labels = torch.tensor([0, 1, 0, 1, 0, 1])
    x = x.clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateBatchWarning)
        value = HistogramLoss()(x, labels)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_bins"):
        HistogramLoss(n_bins=0)
    with pytest.raises(ValueError, match="whole bins"):
        HistogramLoss(delta=0.3)
    with pytest.raises(ValueError, match="disagree"):
        HistogramLoss(n_bins=10, delta=0.1)


def test_delta_is_the_node_spacing():
    assert HistogramLoss(delta=0.02).n_bins == 100 == HistogramLoss().n_bins
    assert HistogramLoss(n_bins=20, delta=0.1).n_bins == 20


@pytest.mark.parametrize("mined", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_parity_with_pml(mined, dtype):
    x, labels = random_batch(n=24, dim=8, num_classes=5, seed=2, dtype=dtype)
    x.requires_grad_()
    pml_indices = pml_miners.MultiSimilarityMiner(0.3)(x, labels) if mined else None
    indices = PairIndices(*pml_indices) if mined else None
    value = HistogramLoss(25)(x, labels, indices=indices)
    (grad,) = torch.autograd.grad(value, x)
    with warnings.catch_warnings():  # PML indexes with a list of lists
        warnings.simplefilter("ignore", UserWarning)
        expected = pml_losses.HistogramLoss(n_bins=25)(x, labels, pml_indices)
    (expected_grad,) = torch.autograd.grad(expected, x)
    # PML picks the bins in float32 whatever the dtype (a 1e-8 shift at a bin edge).
    torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-6)
