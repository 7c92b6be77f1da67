from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from class_level_checks import EMBEDDING_SIZE, NUM_CLASSES, assert_matches_naive, cosine, cross_entropy, labelled_rows

from textdml.losses.sphere_face import SphereFaceLoss


def naive_sphere_face(embeddings, labels, weight, margin, scale):
    losses = []
    for x, y in zip(embeddings, labels.tolist(), strict=True):
        logits = []
        for c, w in enumerate(weight):
            cos = cosine(x, w)
            if c == y:
                theta = math.acos(cos)
                k = math.floor(theta * margin / math.pi)
                cos = (-1) ** k * math.cos(margin * theta) - 2 * k
            # Unit-norm class weights: only the embedding's norm scales the logit.
            logits.append(scale * float(x.norm()) * cos)
        losses.append(cross_entropy(logits, y))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("margin", [1, 2, 4])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_matches_naive_loop(margin, scale):
    loss = SphereFaceLoss(NUM_CLASSES, EMBEDDING_SIZE, margin=margin, scale=scale).double()
    weight = loss.weight.detach()
    assert_matches_naive(loss, lambda x, y: naive_sphere_face(x, y, weight, margin, scale))


def test_class_weight_norms_do_not_matter():
    loss = SphereFaceLoss(NUM_CLASSES, EMBEDDING_SIZE).double()
    embeddings, labels = labelled_rows()
    before = loss(embeddings, labels)
    with torch.no_grad():
        loss.weight.mul_(torch.rand(NUM_CLASSES, 1, dtype=torch.float64) * 10)
    torch.testing.assert_close(loss(embeddings, labels), before)


def test_margin_one_is_a_softmax_on_unit_weights():
    loss = SphereFaceLoss(NUM_CLASSES, EMBEDDING_SIZE, margin=1).double()
    embeddings, labels = labelled_rows()
    expected = F.cross_entropy(embeddings @ F.normalize(loss.weight, dim=1).T, labels)
    torch.testing.assert_close(loss(embeddings, labels), expected)
