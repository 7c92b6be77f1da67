from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from class_level_checks import EMBEDDING_SIZE, NUM_CLASSES, assert_matches_naive, cross_entropy

from textdml.losses.center import CenterLoss


def naive_center(embeddings, labels, weight, bias, centers, lambda_c):
    losses = []
    for x, y in zip(embeddings, labels.tolist(), strict=True):
        logits = [float(w @ x + b) for w, b in zip(weight, bias, strict=True)]
        pull = 0.5 * sum(float(d) ** 2 for d in x - centers[y])
        losses.append(cross_entropy(logits, y) + lambda_c * pull)
    return sum(losses) / len(losses)


@pytest.mark.parametrize("lambda_c", [0.003, 0.5, 0.0])
def test_matches_naive_loop(lambda_c):
    loss = CenterLoss(NUM_CLASSES, EMBEDDING_SIZE, lambda_c=lambda_c).double()
    with torch.no_grad():
        loss.centers.normal_()
    weight, bias, centers = loss.classifier.weight.detach(), loss.classifier.bias.detach(), loss.centers.detach()
    assert_matches_naive(loss, lambda x, y: naive_center(x, y, weight, bias, centers, lambda_c))


def test_parameter_groups_give_the_centres_their_own_rate():
    loss = CenterLoss(NUM_CLASSES, EMBEDDING_SIZE, center_lr=0.5)
    classifier_group, centers_group = loss.parameter_groups(1e-3)
    assert classifier_group["lr"] == 1e-3 and centers_group["lr"] == 0.5
    assert centers_group["params"] == [loss.centers]
    assert classifier_group["params"] == list(loss.classifier.parameters())
    default = CenterLoss(NUM_CLASSES, EMBEDDING_SIZE).parameter_groups(1e-3)
    assert [group["lr"] for group in default] == [1e-3, 1e-3]


def test_sgd_step_with_matched_rate_is_the_paper_update():
    # Paper: c_j <- c_j - alpha * sum_{i: y_i = j} (c_j - x_i) / (1 + n_j); here n_j = 2 for every class.
    alpha, lambda_c, per_class = 0.5, 0.003, 2
    labels = torch.arange(NUM_CLASSES).repeat(per_class)
    embeddings = torch.randn(len(labels), EMBEDDING_SIZE, dtype=torch.float64)
    center_lr = alpha * len(labels) / (lambda_c * (1 + per_class))
    loss = CenterLoss(NUM_CLASSES, EMBEDDING_SIZE, lambda_c=lambda_c, center_lr=center_lr).double()
    with torch.no_grad():
        loss.centers.normal_()
    before = loss.centers.detach().clone()
    optimizer = torch.optim.SGD(loss.parameter_groups(lr=0.0))
    loss(embeddings, labels).backward()
    optimizer.step()

    expected = before.clone()
    for j in range(NUM_CLASSES):
        delta = sum(before[j] - x for x, y in zip(embeddings, labels, strict=True) if y == j) / (1 + per_class)
        expected[j] -= alpha * delta
    torch.testing.assert_close(loss.centers.detach(), expected)


def test_centre_term_pulls_rows_toward_their_centre():
    loss = CenterLoss(NUM_CLASSES, EMBEDDING_SIZE, lambda_c=1.0)
    with torch.no_grad():
        loss.classifier.weight.zero_()  # leave only the centre term's gradient
        loss.centers.normal_()
    labels = torch.arange(NUM_CLASSES)
    embeddings = torch.randn(NUM_CLASSES, EMBEDDING_SIZE, requires_grad=True)
    loss(embeddings, labels).backward()
    expected = (embeddings - loss.centers[labels]).detach() / NUM_CLASSES
    torch.testing.assert_close(embeddings.grad, expected)
    assert F.cosine_similarity(-embeddings.grad, loss.centers[labels] - embeddings, dim=1).gt(0.999).all()
