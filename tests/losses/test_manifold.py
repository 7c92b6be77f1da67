from __future__ import annotations

import io
import math

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
from textdml.losses.manifold import ManifoldLoss


def margin_term(scores, labels, margin):
    """``mean_i log(1 + sum_{k != y_i, v >= 0} e^v)``, one row and one proxy at a time."""
    total = 0.0
    for i, y in enumerate(labels.tolist()):
        inner = 0.0
        for k in range(len(scores[i])):
            v = scores[i][k] - scores[i][y] + margin
            if k != y and v >= 0:
                inner += math.exp(v)
        total += math.log(1 + inner)
    return total / len(labels)


def naive_manifold(embeddings, labels, proxies, lambda_c=1.0, alpha=0.8, margin=5e-4):
    """The graph built entry by entry; the walk iterated to convergence instead of inverted."""
    nodes = list(embeddings) + list(proxies)
    size, n = len(nodes), len(embeddings)
    affinity = torch.zeros(size, size, dtype=torch.float64)
    for i in range(size):
        for j in range(size):
            if i != j:
                affinity[i, j] = math.exp(max(cosine(nodes[i], nodes[j]), 0.0) / 0.5)
    degree = affinity.sum(dim=1)
    normalised = affinity / torch.sqrt(degree[:, None] * degree[None, :])
    walk = torch.eye(size, dtype=torch.float64)
    for _ in range(400):  # F = alpha S F + (1 - alpha) I, the random walk with restart
        walk = alpha * normalised @ walk + (1 - alpha) * torch.eye(size, dtype=torch.float64)
    intrinsic = [[walk[i, n + k].item() for k in range(len(proxies))] for i in range(n)]
    context = [[cosine(walk[i], walk[n + k]) for k in range(len(proxies))] for i in range(n)]
    loss = 0.0 if lambda_c == math.inf else margin_term(intrinsic, labels, margin)
    if lambda_c > 0:
        loss += (1.0 if lambda_c == math.inf else lambda_c) * margin_term(context, labels, margin)
    return loss


def build(seed: int = 0, **kwargs) -> ManifoldLoss:
    torch.manual_seed(seed)
    return ManifoldLoss(NUM_CLASSES, EMBEDDING_SIZE, **kwargs).double()


@pytest.mark.parametrize("lambda_c", [1.0, 0.0, 2.5, math.inf])
@pytest.mark.parametrize("margin", [5e-4, 0.02])
def test_matches_naive_loop(lambda_c, margin):
    loss = build(lambda_c=lambda_c, alpha=0.7, margin=margin)
    proxies = loss.weight.detach()
    assert_matches_naive(loss, lambda x, y: naive_manifold(x, y, proxies, lambda_c, 0.7, margin))


def test_moving_rows_toward_their_proxy_lowers_the_loss():
    loss = build(margin=0.02)
    embeddings, labels = labelled_rows(dtype=torch.float64)
    targets = torch.nn.functional.normalize(loss.weight.detach()[labels], dim=1)
    values = []
    for pull in (0.0, 0.5, 2.0):
        values.append(loss(torch.nn.functional.normalize(embeddings, dim=1) + pull * targets, labels).item())
    assert values[0] > values[1] > values[2]


def test_bfloat16_close_to_float32():
    assert_bfloat16_close_to_float32(build(margin=0.02).float())


def test_gradcheck_embeddings_and_proxies():
    assert_gradcheck_embeddings_and_parameters(build(margin=0.05))


@pytest.mark.parametrize("batch", ["one_class", "identical_rows", "zero_rows", "on_proxy", "one_row"])
def test_hard_batches_are_finite_without_warning(batch):
    loss = build().float()
    assert_finite_without_warning(loss, *hard_batch(batch, on_class=lambda labels: loss.weight[labels]))


def test_empty_batch_warns_and_keeps_the_graph():
    loss = build().float()
    with pytest.warns(DegenerateBatchWarning, match="empty"):
        value = loss(torch.zeros(0, EMBEDDING_SIZE, requires_grad=True), torch.zeros(0, dtype=torch.long))
    value.backward()
    assert value.item() == 0.0 and (loss.weight.grad == 0).all()


def test_state_dict_round_trip_and_parameter_groups():
    loss = build(seed=0).float()
    buffer = io.BytesIO()
    torch.save(loss.state_dict(), buffer)
    restored = build(seed=1).float()
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer))
    embeddings, labels = labelled_rows(dtype=torch.float32)
    assert restored(embeddings, labels).item() == loss(embeddings, labels).item()
    (group,) = loss.parameter_groups(1e-2)
    assert group["params"] == [loss.weight] and group["lr"] == 1e-2


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="lambda_c"):
        ManifoldLoss(NUM_CLASSES, EMBEDDING_SIZE, lambda_c=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        ManifoldLoss(NUM_CLASSES, EMBEDDING_SIZE, alpha=1.0)
    loss = build().float()
    embeddings, labels = labelled_rows(dtype=torch.float32)
    with pytest.raises(ValueError, match="needs class labels"):
        loss(embeddings, ref_embeddings=embeddings)
    with pytest.raises(ValueError, match=rf"label {NUM_CLASSES} .*num_classes={NUM_CLASSES}"):
        loss(embeddings, labels + 1)


@pytest.mark.parametrize("lambda_c", [1.0, 0.0, 3.0])
@pytest.mark.parametrize("some_proxies", [False, True])
def test_matches_pytorch_metric_learning(lambda_c, some_proxies):
    embeddings, labels = labelled_rows(n=10, seed=3, dtype=torch.float32)
    if some_proxies:
        labels = labels % 2  # proxies without rows in the batch
    torch.manual_seed(0)
    theirs = pml_losses.ManifoldLoss(l=EMBEDDING_SIZE, K=NUM_CLASSES, lambdaC=lambda_c, margin=0.01)
    ours = ManifoldLoss(NUM_CLASSES, EMBEDDING_SIZE, lambda_c=lambda_c, margin=0.01)
    with torch.no_grad():
        ours.weight.copy_(theirs.proxies)
    ours_input, their_input = embeddings.clone().requires_grad_(), embeddings.clone().requires_grad_()
    got = ours(ours_input, labels)
    expected = theirs(their_input, indices_tuple=labels)  # PML takes the proxy ids as meta-classes
    got.backward()
    expected.backward()
    torch.testing.assert_close(got, expected.reshape(()))
    torch.testing.assert_close(ours_input.grad, their_input.grad)
    torch.testing.assert_close(ours.weight.grad, theirs.proxies.grad)
