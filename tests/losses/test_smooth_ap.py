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

from tests.miners.miner_checks import cosine, random_batch, random_ref_batch
from textdml.losses.smooth_ap import SmoothAPLoss
from textdml.miners.base import all_pairs, all_triplets


def naive_smooth_ap(x, labels, ref=None, ref_labels=None, temperature=0.01, include_self=False, pairs=None):
    """Smooth-AP one anchor, one positive and one ranked row at a time (the paper's Eq. 6).

    ``pairs``: (positive pairs, negative pairs) as lists of (anchor, row), to rank only those.
    """
    same_set = ref is None
    ref, ref_labels = (x, labels) if same_set else (ref, ref_labels)
    losses = []
    for i in range(len(x)):
        ranked = [j for j in range(len(ref)) if include_self or not (same_set and i == j)]
        positives = [j for j in ranked if ref_labels[j] == labels[i]]
        if pairs is not None:
            positives = [j for a, j in pairs[0] if a == i]
            ranked = positives + [j for a, j in pairs[1] if a == i]
        if not positives:
            continue
        sim = {j: torch.nn.functional.cosine_similarity(x[i], ref[j], dim=0) for j in ranked}
        ap = 0.0
        for p in positives:
            above = {j: torch.sigmoid((sim[j] - sim[p]) / temperature) for j in ranked if j != p}
            rank_pos = 1 + sum(above[j] for j in positives if j != p)
            rank_all = 1 + sum(above.values())
            ap = ap + rank_pos / rank_all
        losses.append(1 - ap / len(positives))
    return torch.stack(losses).mean()


def clustered_batch(noise: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.tensor([2, 0, 1, 0, 2, 1, 1, 0, 0])
    return torch.eye(3, 6)[labels] + noise * torch.randn(9, 6, generator=gen), labels


@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("temperature", [0.01, 0.5])
def test_matches_naive_reference_for_unsorted_unequal_classes(include_self, temperature):
    x, _ = random_batch(n=11, dim=5)
    labels = torch.tensor([3, 0, 1, 0, 3, 3, 1, 0, 0, 5, 3])  # unsorted, sizes 4, 2, 4, 1
    loss = SmoothAPLoss(temperature, include_self=include_self)
    expected = naive_smooth_ap(x, labels, temperature=temperature, include_self=include_self)
    torch.testing.assert_close(loss(x, labels), expected)


def test_matches_naive_reference_with_ref_embeddings():
    x, labels, ref, ref_labels = random_ref_batch()
    got = SmoothAPLoss(0.1)(x, labels, ref_embeddings=ref, ref_labels=ref_labels)
    torch.testing.assert_close(got, naive_smooth_ap(x, labels, ref, ref_labels, temperature=0.1))


def test_pairs_by_position():
    x, _ = random_batch(n=5, dim=4)
    ref, _ = random_batch(n=8, dim=4, seed=3)
    got = SmoothAPLoss(0.1)(x, ref_embeddings=ref)
    torch.testing.assert_close(got, naive_smooth_ap(x, torch.arange(5), ref, torch.arange(8), temperature=0.1))


def test_low_temperature_approaches_exact_average_precision():
    x, _ = random_batch(n=9, dim=6, seed=4)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 1])
    exact = []
    for i in range(len(x)):
        others = [j for j in range(len(x)) if j != i]
        order = sorted(others, key=lambda j: -cosine(x[i], x[j]))
        hits, precision = 0, 0.0
        for rank, j in enumerate(order, start=1):
            if labels[j] == labels[i]:
                hits += 1
                precision += hits / rank
        exact.append(precision / hits)
    expected = 1 - sum(exact) / len(exact)
    assert abs(SmoothAPLoss(temperature=1e-4)(x, labels).item() - expected) < 1e-3


def test_moving_positives_closer_lowers_the_loss():
    loss = SmoothAPLoss(0.1)
    values = [loss(*clustered_batch(noise)).item() for noise in (1.0, 0.5, 0.1)]
    assert values[0] > values[1] > values[2]


@pytest.mark.parametrize("use_ref", [False, True])
def test_gradcheck(use_ref):
    x, labels, ref, ref_labels = random_ref_batch()
    ref, ref_labels = (ref, ref_labels) if use_ref else (None, None)
    loss = SmoothAPLoss(temperature=0.5)
    assert torch.autograd.gradcheck(
        lambda e: loss(e, labels, ref_embeddings=ref, ref_labels=ref_labels), (x.requires_grad_(),)
    )


@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [0]], ids=["no_positive", "single_row"])
def test_no_positive_warns_and_is_zero(labels):
    assert_no_positive_warns_and_is_zero(SmoothAPLoss(), labels)


@pytest.mark.parametrize("batch", ["identical", "one_class", "zero_rows"])
def test_hard_batches_are_finite(batch):
    assert_finite_with_gradient(SmoothAPLoss(), *hard_batch(batch))


def test_bad_arguments():
    with pytest.raises(ValueError, match="temperature"):
        SmoothAPLoss(temperature=0.0)


@pytest.mark.parametrize("temperature", [0.01, 0.1])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_parity_with_pml_where_its_layout_holds(temperature, dtype):
    # PML 2.9 is right for labels sorted into equal classes, as many classes as rows per class.
    x, _ = random_batch(n=16, dim=8, seed=2, dtype=dtype)
    labels = torch.arange(16) // 4
    # PML accumulates the AP in float32 whatever the input dtype.
    assert_same_value_and_input_gradient(SmoothAPLoss(temperature, include_self=True),
                                         pml_losses.SmoothAPLoss(temperature), x, labels, rtol=1e-5, atol=1e-6)


def test_pml_is_wrong_outside_its_layout_and_we_are_not():
    # Sorted, equal-size classes, but 6 classes of 4: PML cuts the batch into 4 blocks of 6.
    x, _ = random_batch(n=24, dim=8, seed=2)
    labels = torch.arange(24) // 4
    expected = naive_smooth_ap(x, labels, temperature=0.1, include_self=True)
    torch.testing.assert_close(SmoothAPLoss(0.1, include_self=True)(x, labels), expected)
    assert abs(pml_losses.SmoothAPLoss(0.1)(x, labels).item() - expected.item()) > 1e-3
    # The same rows shuffled give the same loss here, as they should.
    order = torch.randperm(24, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(SmoothAPLoss(0.1, include_self=True)(x[order], labels[order]), expected)


def test_blocks_of_anchors_match_one_block_forward_and_backward():
    x, _ = random_batch(n=13, dim=6, seed=7)
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 0, 1, 2, 1, 0, 3, 3])  # one large class
    whole, blocked = SmoothAPLoss(0.1), SmoothAPLoss(0.1)
    blocked.max_block_elements = 40  # one anchor per block
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    value, expected = blocked(x1, labels), whole(x2, labels)
    value.backward()
    expected.backward()
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(x1.grad, x2.grad)


@pytest.mark.parametrize("use_ref", [False, True])
def test_every_pair_as_tuples_is_the_plain_loss(use_ref):
    x, labels, ref, ref_labels = random_ref_batch()
    ref, ref_labels = (ref, ref_labels) if use_ref else (None, None)
    loss = SmoothAPLoss(0.1)
    expected = loss(x, labels, ref_embeddings=ref, ref_labels=ref_labels)
    for indices in (all_pairs(labels, ref_labels), all_triplets(labels, ref_labels)):
        got = loss(x, labels, ref_embeddings=ref, ref_labels=ref_labels, indices=indices)
        torch.testing.assert_close(got, expected)


def test_mined_tuples_restrict_each_list():
    x, labels = random_batch(n=10, dim=5, num_classes=3)
    mined, pairs = mined_pair_lists(labels)
    expected = naive_smooth_ap(x, labels, temperature=0.1, pairs=pairs)
    torch.testing.assert_close(SmoothAPLoss(0.1)(x, labels, indices=mined), expected)
