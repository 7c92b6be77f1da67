from __future__ import annotations

import math

import pytest
import torch
from class_level_checks import EMBEDDING_SIZE, NUM_CLASSES, assert_matches_naive, cosine, cross_entropy, labelled_rows

from textdml.losses.arc_face import ArcFaceLoss


def naive_arc_face(embeddings, labels, weight, margin, scale, sub_centers):
    losses = []
    for x, y in zip(embeddings, labels.tolist(), strict=True):
        logits = []
        for c in range(NUM_CLASSES):
            centers = weight[c * sub_centers : (c + 1) * sub_centers]
            cos = max(cosine(x, w) for w in centers)  # the closest sub-centre
            if c == y:
                theta = math.acos(cos)
                cos = math.cos(theta + margin) if theta <= math.pi - margin else cos - margin * math.sin(margin)
            logits.append(scale * cos)
        losses.append(cross_entropy(logits, y))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("margin, scale", [(0.5, 64.0), (0.2, 8.0), (2.5, 4.0)])
@pytest.mark.parametrize("sub_centers", [1, 3])
def test_matches_naive_loop(margin, scale, sub_centers):
    loss = ArcFaceLoss(NUM_CLASSES, EMBEDDING_SIZE, margin=margin, scale=scale, sub_centers=sub_centers).double()
    weight = loss.weight.detach()
    assert_matches_naive(loss, lambda x, y: naive_arc_face(x, y, weight, margin, scale, sub_centers))


@pytest.mark.parametrize("margin", [0.5, 1.5])
def test_target_logit_keeps_decreasing_past_pi_minus_margin(margin):
    loss = ArcFaceLoss(NUM_CLASSES, EMBEDDING_SIZE, margin=margin).double()
    theta = torch.linspace(0, math.pi, 2001, dtype=torch.float64)
    values = loss.target_logit(torch.cos(theta))
    assert (values.diff() <= 1e-12).all()
    # At theta = 0 the value is cos(m), up to the clamp that keeps acos's slope finite at cos = 1.
    assert math.isclose(values[0].item(), math.cos(margin), abs_tol=1e-3)


def test_one_sub_center_per_class_is_plain_arc_face():
    plain = ArcFaceLoss(NUM_CLASSES, EMBEDDING_SIZE).double()
    sub = ArcFaceLoss(NUM_CLASSES, EMBEDDING_SIZE, sub_centers=2).double()
    with torch.no_grad():
        # Each class's second sub-centre is a shorter copy of the first: the same direction.
        sub.weight.view(NUM_CLASSES, 2, EMBEDDING_SIZE)[:, 0] = plain.weight
        sub.weight.view(NUM_CLASSES, 2, EMBEDDING_SIZE)[:, 1] = 0.5 * plain.weight
    embeddings, labels = labelled_rows()
    torch.testing.assert_close(sub(embeddings, labels), plain(embeddings, labels))


def test_margin_is_in_radians():
    with pytest.raises(ValueError, match="radians"):
        ArcFaceLoss(NUM_CLASSES, EMBEDDING_SIZE, margin=28.6)
