from __future__ import annotations

import math

import pytest
import torch
from class_level_checks import EMBEDDING_SIZE, NUM_CLASSES, assert_matches_naive, cosine, cross_entropy, labelled_rows

from textdml.losses.soft_triple import SoftTripleLoss


def naive_soft_triple(embeddings, labels, centers, K, la, gamma, margin, tau):
    losses = []
    for x, y in zip(embeddings, labels.tolist(), strict=True):
        logits = []
        for c in range(NUM_CLASSES):
            cos = [cosine(x, w) for w in centers[c * K : (c + 1) * K]]
            weights = [math.exp(s / gamma) for s in cos]
            similarity = sum(w * s for w, s in zip(weights, cos, strict=True)) / sum(weights)
            logits.append(la * (similarity - (margin if c == y else 0.0)))
        losses.append(cross_entropy(logits, y))
    loss = sum(losses) / len(losses)
    if tau > 0 and K > 1:
        spread = 0.0
        for c in range(NUM_CLASSES):
            for k in range(K):
                for k2 in range(k + 1, K):
                    spread += math.sqrt(2 + 1e-5 - 2 * cosine(centers[c * K + k], centers[c * K + k2]))
        loss += tau * spread / (NUM_CLASSES * K * (K - 1))
    return loss


@pytest.mark.parametrize(
    "K, la, gamma, margin, tau",
    [(10, 20.0, 0.1, 0.01, 0.2), (3, 5.0, 0.5, 0.1, 0.0), (1, 20.0, 0.1, 0.01, 0.2), (2, 1.0, 1.0, 0.0, 1.0)],
)
def test_matches_naive_loop(K, la, gamma, margin, tau):
    loss = SoftTripleLoss(NUM_CLASSES, EMBEDDING_SIZE, centers_per_class=K, la=la, gamma=gamma, margin=margin, tau=tau)
    loss = loss.double()
    centers = loss.weight.detach()
    assert_matches_naive(loss, lambda x, y: naive_soft_triple(x, y, centers, K, la, gamma, margin, tau))


def test_regulariser_pulls_a_class_centres_together():
    loss = SoftTripleLoss(NUM_CLASSES, EMBEDDING_SIZE, centers_per_class=3, tau=1.0).double()
    embeddings, labels = labelled_rows()
    loss(embeddings, labels).backward()
    with_tau = loss.weight.grad.clone()
    loss.weight.grad = None
    loss.tau = 0.0
    loss(embeddings, labels).backward()
    regulariser_grad = with_tau - loss.weight.grad
    # A gradient step on the regulariser alone raises the cosine between a class's centres.
    centers = loss.weight.detach()
    stepped = centers - 0.01 * regulariser_grad

    def within_class_cosine(w):
        unit = torch.nn.functional.normalize(w, dim=1).view(NUM_CLASSES, 3, EMBEDDING_SIZE)
        return (unit @ unit.transpose(1, 2)).sum()

    assert within_class_cosine(stepped) > within_class_cosine(centers)


def test_gamma_must_be_positive():
    with pytest.raises(ValueError, match="gamma"):
        SoftTripleLoss(NUM_CLASSES, EMBEDDING_SIZE, gamma=0.0)
