from __future__ import annotations

import pytest
import torch
from class_level_checks import EMBEDDING_SIZE, NUM_CLASSES, assert_matches_naive, cosine, cross_entropy, labelled_rows

from textdml.losses.cos_face import CosFaceLoss
from textdml.losses.norm_softmax import NormSoftmaxLoss


def naive_cos_face(embeddings, labels, weight, margin, scale):
    losses = []
    for x, y in zip(embeddings, labels.tolist(), strict=True):
        logits = [scale * (cosine(x, w) - (margin if c == y else 0.0)) for c, w in enumerate(weight)]
        losses.append(cross_entropy(logits, y))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("margin, scale", [(0.35, 64.0), (0.1, 8.0), (0.0, 1.0)])
def test_matches_naive_loop(margin, scale):
    loss = CosFaceLoss(NUM_CLASSES, EMBEDDING_SIZE, margin=margin, scale=scale).double()
    weight = loss.weight.detach()
    assert_matches_naive(loss, lambda x, y: naive_cos_face(x, y, weight, margin, scale))


def test_zero_margin_is_norm_softmax_at_temperature_one_over_scale():
    cos_face = CosFaceLoss(NUM_CLASSES, EMBEDDING_SIZE, margin=0.0, scale=20.0).double()
    norm_softmax = NormSoftmaxLoss(NUM_CLASSES, EMBEDDING_SIZE, temperature=0.05).double()
    norm_softmax.load_state_dict(cos_face.state_dict())
    embeddings, labels = labelled_rows()
    torch.testing.assert_close(cos_face(embeddings, labels), norm_softmax(embeddings, labels))


def test_larger_margin_gives_larger_loss():
    embeddings, labels = labelled_rows()
    torch.manual_seed(0)
    small = CosFaceLoss(NUM_CLASSES, EMBEDDING_SIZE, margin=0.1).double()
    large = CosFaceLoss(NUM_CLASSES, EMBEDDING_SIZE, margin=0.5).double()
    large.load_state_dict(small.state_dict())
    assert large(embeddings, labels) > small(embeddings, labels)
