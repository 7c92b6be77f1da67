from __future__ import annotations

import pytest
import torch
from class_level_checks import EMBEDDING_SIZE, NUM_CLASSES, assert_matches_naive, cosine, cross_entropy, labelled_rows

from textdml.losses.norm_softmax import NormSoftmaxLoss


def naive_norm_softmax(embeddings, labels, weight, temperature):
    losses = []
    for x, y in zip(embeddings, labels.tolist(), strict=True):
        logits = [cosine(x, w) / temperature for w in weight]
        losses.append(cross_entropy(logits, y))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("temperature", [0.05, 0.5, 2.0])
def test_matches_naive_loop(temperature):
    loss = NormSoftmaxLoss(NUM_CLASSES, EMBEDDING_SIZE, temperature=temperature).double()
    weight = loss.weight.detach()
    assert_matches_naive(loss, lambda x, y: naive_norm_softmax(x, y, weight, temperature))


def test_embedding_and_weight_norms_do_not_matter():
    loss = NormSoftmaxLoss(NUM_CLASSES, EMBEDDING_SIZE).double()
    embeddings, labels = labelled_rows()
    before = loss(embeddings, labels)
    with torch.no_grad():
        loss.weight.mul_(7.0)
    torch.testing.assert_close(loss(embeddings * 3.0, labels), before)


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="temperature"):
        NormSoftmaxLoss(NUM_CLASSES, EMBEDDING_SIZE, temperature=0.0)
