from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses

from tests.miners.miner_checks import cosine, random_batch
from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.instance import InstanceLoss


def naive_instance(x, labels, ref=None, ref_labels=None, gamma=64.0):
    """Cross-entropy of each row over the reference rows, its class the first row of its label."""
    ref, ref_labels = (x, labels) if ref is None else (ref, ref_labels)
    losses = []
    for i in range(len(x)):
        targets = [j for j in range(len(ref)) if ref_labels[j] == labels[i]]
        if not targets:
            continue
        logits = [gamma * cosine(x[i], r) for r in ref]
        losses.append(-logits[targets[0]] + math.log(sum(math.exp(v) for v in logits)))
    return sum(losses) / len(losses)


def image_then_captions(num_instances: int = 5, captions: int = 2, seed: int = 0):
    """The paper's layout: one image per instance, then each instance's captions."""
    x, _ = random_batch(n=num_instances * (1 + captions), dim=6, seed=seed)
    labels = torch.arange(num_instances).repeat(1 + captions)
    return x, labels


@pytest.mark.parametrize("gamma", [64.0, 4.0])
def test_matches_naive_reference(gamma):
    x, _ = random_batch(n=9, dim=5)
    labels = torch.tensor([4, 1, 4, 0, 1, 1, 7, 0, 4])  # any order: the first row of a label is its class
    got = InstanceLoss(gamma)(x, labels)
    assert math.isclose(got.item(), naive_instance(x, labels, gamma=gamma), rel_tol=1e-9)


def test_matches_naive_reference_with_ref_embeddings():
    x, labels = random_batch(n=6, dim=5, num_classes=3)
    ref, ref_labels = random_batch(n=8, dim=5, seed=5)
    ref_labels = torch.tensor([2, 0, 9, 1, 0, 2, 1, 5])
    labels[0] = 6  # not among the reference rows: skipped
    got = InstanceLoss(8.0)(x, labels, ref_embeddings=ref, ref_labels=ref_labels)
    assert math.isclose(got.item(), naive_instance(x, labels, ref, ref_labels, gamma=8.0), rel_tol=1e-9)


def test_pairs_by_position_are_info_nce():
    x, _ = random_batch(n=4, dim=5)
    ref, _ = random_batch(n=7, dim=5, seed=9)
    got = InstanceLoss(10.0)(x, ref_embeddings=ref)
    logits = 10.0 * torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(ref, dim=1).T
    torch.testing.assert_close(got, torch.nn.functional.cross_entropy(logits, torch.arange(4)))


def test_moving_captions_toward_their_image_lowers_the_loss():
    x, labels = image_then_captions()
    images = x[:5]
    loss = InstanceLoss(16.0)
    values = []
    for pull in (0.0, 0.5, 0.9):
        moved = x.clone()
        moved[5:] = (1 - pull) * x[5:] + pull * images[labels[5:]]
        values.append(loss(moved, labels).item())
    assert values[0] > values[1] > values[2]


@pytest.mark.parametrize("use_ref", [False, True])
def test_gradcheck(use_ref):
    x, labels = image_then_captions(num_instances=3)
    ref, ref_labels = (x[:4].clone(), labels[:4]) if use_ref else (None, None)
    loss = InstanceLoss(gamma=4.0)
    assert torch.autograd.gradcheck(
        lambda e: loss(e, labels, ref_embeddings=ref, ref_labels=ref_labels), (x.requires_grad_(),)
    )


def test_empty_batch_and_no_target_warn_and_are_zero():
    x = torch.zeros(0, 4, requires_grad=True)
    with pytest.warns(DegenerateBatchWarning, match="empty"):
        value = InstanceLoss()(x, torch.zeros(0, dtype=torch.long))
    value.backward()
    assert value.item() == 0.0
    x = torch.randn(3, 4, requires_grad=True)
    with pytest.warns(DegenerateBatchWarning, match="reference rows"):
        value = InstanceLoss()(
            x, torch.tensor([0, 1, 2]), ref_embeddings=torch.randn(2, 4), ref_labels=torch.tensor([5, 6])
        )
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("batch", ["identical", "zero_rows", "one_row"])
def test_hard_batches_are_finite(batch):
    x, labels = image_then_captions()
    x = x.float()
    if batch == "identical":
        x = torch.ones_like(x)
    elif batch == "zero_rows":
        x = torch.zeros_like(x)
    else:
        x, labels = x[:1], labels[:1]
    x = x.clone().requires_grad_()
    value = InstanceLoss()(x, labels)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="gamma"):
        InstanceLoss(gamma=0)


@pytest.mark.parametrize("layout", ["image_then_captions", "distinct_labels"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_parity_with_pml_where_its_targets_are_the_instances(layout, dtype):
    if layout == "image_then_captions":
        x, labels = image_then_captions(seed=2)
    else:
        x, _ = random_batch(n=10, dim=6, seed=2)
        labels = torch.arange(10)
    x = x.to(dtype).requires_grad_()
    value = InstanceLoss(16.0)(x, labels)
    (grad,) = torch.autograd.grad(value, x)
    expected = pml_losses.InstanceLoss(gamma=16.0)(x, labels)
    (expected_grad,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grad, expected_grad)


def test_pml_targets_unrelated_rows_in_other_layouts():
    # Labels [3, 3, 5, 5]: PML targets columns 0, 0, 1, 1, so row 2 is "classified" as row 1.
    x, _ = random_batch(n=4, dim=6, seed=3)
    labels = torch.tensor([3, 3, 5, 5])
    expected = naive_instance(x, labels, gamma=16.0)
    assert math.isclose(InstanceLoss(16.0)(x, labels).item(), expected, rel_tol=1e-9)
    assert abs(pml_losses.InstanceLoss(gamma=16.0)(x, labels).item() - expected) > 1e-3


def test_reductions_agree():
    x, labels = image_then_captions(seed=4)
    per_row = InstanceLoss(8.0, reduction="none")(x, labels)
    assert per_row.shape == (len(x),)
    torch.testing.assert_close(InstanceLoss(8.0)(x, labels), per_row.mean())
    torch.testing.assert_close(InstanceLoss(8.0, reduction="sum")(x, labels), per_row.sum())
