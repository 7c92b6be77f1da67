from __future__ import annotations

import pytest
import torch
from pair_checks import (
    assert_finite_with_gradient,
    assert_no_positive_warns_and_is_zero,
    assert_same_value_and_input_gradient,
    hard_batch,
    mined_pair_lists,
)
from pytorch_metric_learning import losses as pml_losses

from tests.miners.miner_checks import random_batch, random_ref_batch, unit
from textdml.losses.fast_ap import FastAPLoss
from textdml.miners.base import all_pairs


def naive_fast_ap(x, labels, ref=None, ref_labels=None, num_bins=10, pairs=None):
    """FastAP one anchor, one bin and one reference row at a time (the paper's Eq. 11).

    ``pairs``: (positive pairs, negative pairs) as lists of (anchor, row), to rank only those.
    """
    same_set = ref is None
    ref, ref_labels = (x, labels) if same_set else (ref, ref_labels)
    delta = 4.0 / num_bins
    centres = [k * delta for k in range(num_bins + 1)]
    losses = []
    for i in range(len(x)):
        others = [j for j in range(len(ref)) if not (same_set and i == j)]
        positives = [j for j in others if ref_labels[j] == labels[i]]
        if pairs is not None:
            positives = [j for a, j in pairs[0] if a == i]
            others = positives + [j for a, j in pairs[1] if a == i]
        if not positives:
            continue
        dist = {j: ((unit(x[i]) - unit(ref[j])) ** 2).sum() for j in others}
        pos_hist = [sum(torch.relu(1 - (dist[j] - c).abs() / delta) for j in positives) for c in centres]
        all_hist = [sum(torch.relu(1 - (dist[j] - c).abs() / delta) for j in others) for c in centres]
        ap, pos_cum, all_cum = 0.0, 0.0, 0.0
        for h_pos, h_all in zip(pos_hist, all_hist, strict=True):
            pos_cum, all_cum = pos_cum + h_pos, all_cum + h_all
            if h_pos * pos_cum > 0:
                ap = ap + h_pos * pos_cum / all_cum
        losses.append(1 - ap / len(positives))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("num_bins", [10, 4])
def test_matches_naive_reference(num_bins):
    x, labels = random_batch(n=10, dim=5, num_classes=3)
    labels[-1] = 7  # an anchor without a positive is skipped
    expected = naive_fast_ap(x, labels, num_bins=num_bins)
    torch.testing.assert_close(FastAPLoss(num_bins)(x, labels), expected)


def test_matches_naive_reference_with_ref_embeddings():
    x, labels, ref, ref_labels = random_ref_batch()
    got = FastAPLoss()(x, labels, ref_embeddings=ref, ref_labels=ref_labels)
    torch.testing.assert_close(got, naive_fast_ap(x, labels, ref, ref_labels))


def test_pairs_by_position():
    x, _ = random_batch(n=5, dim=4)
    ref, _ = random_batch(n=8, dim=4, seed=3)
    got = FastAPLoss()(x, ref_embeddings=ref)
    torch.testing.assert_close(got, naive_fast_ap(x, torch.arange(5), ref, torch.arange(8)))


@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [0]], ids=["no_positive", "single_row"])
def test_no_positive_warns_and_is_zero(labels):
    assert_no_positive_warns_and_is_zero(FastAPLoss(), labels)


@pytest.mark.parametrize("batch", ["identical", "one_class", "antipodal"])
def test_hard_batches_are_finite(batch):
    # antipodal: squared distances exactly 0 and 4, the two ends of the histogram
    assert_finite_with_gradient(FastAPLoss(), *hard_batch(batch))


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_bins"):
        FastAPLoss(num_bins=0)


@pytest.mark.parametrize("use_ref", [False, True])
def test_every_pair_as_tuples_is_the_plain_loss(use_ref):
    x, labels, ref, ref_labels = random_ref_batch()
    ref, ref_labels = (ref, ref_labels) if use_ref else (None, None)
    loss = FastAPLoss()
    expected = loss(x, labels, ref_embeddings=ref, ref_labels=ref_labels)
    got = loss(x, labels, ref_embeddings=ref, ref_labels=ref_labels, indices=all_pairs(labels, ref_labels))
    torch.testing.assert_close(got, expected)


def test_mined_tuples_restrict_each_list():
    x, labels = random_batch(n=10, dim=5, num_classes=3)
    mined, pairs = mined_pair_lists(labels)
    torch.testing.assert_close(FastAPLoss()(x, labels, indices=mined), naive_fast_ap(x, labels, pairs=pairs))


@pytest.mark.parametrize("num_bins", [10, 25])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_parity_with_pml(num_bins, dtype):
    x, labels = random_batch(n=24, dim=8, num_classes=5, seed=2, dtype=dtype)
    labels[0] = 9  # an anchor without a positive
    assert_same_value_and_input_gradient(FastAPLoss(num_bins), pml_losses.FastAPLoss(num_bins), x, labels)
