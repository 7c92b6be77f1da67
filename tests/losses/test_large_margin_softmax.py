from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from class_level_checks import EMBEDDING_SIZE, NUM_CLASSES, assert_matches_naive, cosine, cross_entropy, labelled_rows

from textdml.losses.large_margin_softmax import LargeMarginSoftmaxLoss


def psi(theta: float, margin: int) -> float:
    """The paper's Eq. 6: (-1)^k cos(m theta) - 2k on the k-th piece [k pi / m, (k + 1) pi / m]."""
    k = math.floor(theta * margin / math.pi)
    return (-1) ** k * math.cos(margin * theta) - 2 * k


def naive_large_margin_softmax(embeddings, labels, weight, margin, scale):
    losses = []
    for x, y in zip(embeddings, labels.tolist(), strict=True):
        logits = []
        for c, w in enumerate(weight):
            cos = cosine(x, w)
            value = psi(math.acos(cos), margin) if c == y else cos
            logits.append(scale * float(x.norm() * w.norm()) * value)
        losses.append(cross_entropy(logits, y))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("margin", [1, 2, 3, 4])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_matches_naive_loop(margin, scale):
    loss = LargeMarginSoftmaxLoss(NUM_CLASSES, EMBEDDING_SIZE, margin=margin, scale=scale).double()
    weight = loss.weight.detach()
    assert_matches_naive(loss, lambda x, y: naive_large_margin_softmax(x, y, weight, margin, scale))


def test_margin_one_is_a_plain_softmax_classifier():
    loss = LargeMarginSoftmaxLoss(NUM_CLASSES, EMBEDDING_SIZE, margin=1).double()
    embeddings, labels = labelled_rows()
    expected = F.cross_entropy(embeddings @ loss.weight.T, labels)
    torch.testing.assert_close(loss(embeddings, labels), expected)


@pytest.mark.parametrize("margin", [2, 3, 4])
def test_target_logit_is_continuous_and_decreasing_in_the_angle(margin):
    loss = LargeMarginSoftmaxLoss(NUM_CLASSES, EMBEDDING_SIZE, margin=margin).double()
    theta = torch.linspace(0, math.pi, 2001, dtype=torch.float64)
    values = loss.target_logit(torch.cos(theta))
    steps = values.diff()
    assert (steps <= 1e-12).all()
    assert steps.abs().max() < 0.02


@pytest.mark.parametrize("margin", [0, 2.5])
def test_margin_must_be_a_positive_integer(margin):
    with pytest.raises(ValueError, match="integer"):
        LargeMarginSoftmaxLoss(NUM_CLASSES, EMBEDDING_SIZE, margin=margin)
