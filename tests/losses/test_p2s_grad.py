from __future__ import annotations

import io

import pytest
import torch
from class_level_checks import (
    EMBEDDING_SIZE,
    NUM_CLASSES,
    assert_bfloat16_close_to_float32,
    assert_finite_without_warning,
    assert_gradcheck_embeddings_and_parameters,
    assert_matches_naive,
    cosine,
    hard_batch,
    labelled_rows,
)
from pytorch_metric_learning import losses as pml_losses

from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.p2s_grad import P2SGradLoss


def naive_p2s_grad(embeddings, labels, weight):
    total = 0.0
    for x, y in zip(embeddings, labels.tolist(), strict=True):
        for j, w in enumerate(weight):
            total += (min(max(cosine(x, w), -1.0), 1.0) - (1.0 if j == y else 0.0)) ** 2
    return total / (len(embeddings) * len(weight))


def build(seed: int = 0) -> P2SGradLoss:
    torch.manual_seed(seed)
    return P2SGradLoss(NUM_CLASSES, EMBEDDING_SIZE)


def test_matches_naive_loop():
    loss = build().double()
    weight = loss.weight.detach()
    assert_matches_naive(loss, lambda x, y: naive_p2s_grad(x, y, weight))


def test_class_vectors_start_as_unit_rows_and_their_norm_does_not_matter():
    loss = build()
    torch.testing.assert_close(loss.weight.norm(dim=1), torch.ones(NUM_CLASSES))
    embeddings, labels = labelled_rows(dtype=torch.float32)
    before = loss(embeddings, labels)
    with torch.no_grad():
        loss.weight.mul_(5.0)
    torch.testing.assert_close(loss(embeddings * 3.0, labels), before)


def test_moving_rows_toward_their_class_lowers_the_loss():
    loss = build()
    embeddings, labels = labelled_rows(dtype=torch.float32)
    targets = loss.weight.detach()[labels]
    values = [
        loss(torch.nn.functional.normalize(embeddings, dim=1) + pull * targets, labels).item()
        for pull in (0.0, 0.5, 2.0)
    ]
    assert values[0] > values[1] > values[2]


def test_bfloat16_close_to_float32():
    assert_bfloat16_close_to_float32(build(), input_atol=2e-2, cast_atol=5e-2)


def test_gradcheck_embeddings_and_weight():
    assert_gradcheck_embeddings_and_parameters(build().double())


@pytest.mark.parametrize("batch", ["one_class", "identical_rows", "zero_rows", "on_class_vector"])
def test_hard_batches_are_finite_without_warning(batch):
    loss = build()
    assert_finite_without_warning(loss, *hard_batch(batch, on_class=lambda labels: loss.weight[labels]))


def test_empty_batch_warns_and_keeps_the_graph():
    loss = build()
    with pytest.warns(DegenerateBatchWarning, match="empty"):
        value = loss(torch.zeros(0, EMBEDDING_SIZE, requires_grad=True), torch.zeros(0, dtype=torch.long))
    value.backward()
    assert value.item() == 0.0 and (loss.weight.grad == 0).all()


def test_state_dict_round_trip():
    loss = build(seed=0)
    buffer = io.BytesIO()
    torch.save(loss.state_dict(), buffer)
    restored = build(seed=1)
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer))
    embeddings, labels = labelled_rows(dtype=torch.float32)
    assert restored(embeddings, labels).item() == loss(embeddings, labels).item()


def test_bad_inputs_raise_clear_errors():
    loss = build()
    embeddings, labels = labelled_rows(dtype=torch.float32)
    with pytest.raises(ValueError, match="integer class ids"):
        loss(embeddings, labels.float())
    with pytest.raises(ValueError, match=f"embedding_size={EMBEDDING_SIZE}"):
        loss(torch.randn(8, EMBEDDING_SIZE + 1), labels)


@pytest.mark.parametrize("labels_kind", ["every_class", "some_classes"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_pytorch_metric_learning(labels_kind, dtype):
    embeddings, labels = labelled_rows(n=10, seed=3, dtype=dtype)
    if labels_kind == "some_classes":
        labels = labels % 2
    theirs = pml_losses.P2SGradLoss(descriptors_dim=EMBEDDING_SIZE, num_classes=NUM_CLASSES).to(dtype)
    ours = P2SGradLoss(NUM_CLASSES, EMBEDDING_SIZE).to(dtype)
    with torch.no_grad():
        ours.weight.copy_(theirs.weight.T)
    ours_input, their_input = embeddings.clone().requires_grad_(), embeddings.clone().requires_grad_()
    got, expected = ours(ours_input, labels), theirs(their_input, labels)
    got.backward()
    expected.backward()
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(ours_input.grad, their_input.grad)
    # PML keeps the unit norm out of the graph: ours is its gradient without the radial part.
    unit = ours.weight.detach()
    their_grad = theirs.weight.grad.T
    tangent = their_grad - (their_grad * unit).sum(dim=1, keepdim=True) * unit
    torch.testing.assert_close(ours.weight.grad, tangent)
