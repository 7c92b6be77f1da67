from __future__ import annotations

import math

import pytest
import torch
from miner_checks import candidate_rows, random_batch, random_ref_batch, tuple_set, unit
from pytorch_metric_learning import miners as pml_miners

from textdml.miners.angular import AngularMiner


def naive_angular(embeddings, labels, ref, ref_labels, angle):
    ref_rows = embeddings if ref is None else ref
    kept = []
    for a in range(len(embeddings)):
        positives, negatives = candidate_rows(labels, ref_labels, a)
        for p in positives:
            for n in negatives:
                anchor, positive, negative = unit(embeddings[a]), unit(ref_rows[p]), unit(ref_rows[n])
                centre = (anchor + positive) / 2
                theta = math.atan(float((anchor - positive).norm()) / (2 * float((negative - centre).norm())))
                if theta > math.radians(angle):
                    kept.append((a, p, n))
    return sorted(kept)


@pytest.mark.parametrize("angle", [20, 35])
@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_naive_loop_and_pml(angle, use_ref):
    embeddings, labels, ref, ref_labels = random_ref_batch() if use_ref else (*random_batch(), None, None)
    mined = tuple_set(AngularMiner(angle)(embeddings, labels, ref, ref_labels))
    assert mined, "the test needs some triplets above the threshold"
    assert mined == naive_angular(embeddings, labels, ref, ref_labels, angle)
    # pytorch-metric-learning measures the angle on the raw embeddings: they agree on unit vectors.
    embeddings = torch.nn.functional.normalize(embeddings, dim=-1)
    ref = None if ref is None else torch.nn.functional.normalize(ref, dim=-1)
    theirs = pml_miners.AngularMiner(angle)(embeddings, labels, ref, ref_labels)
    assert mined == tuple_set(theirs)


def test_wider_angle_keeps_fewer():
    embeddings, labels = random_batch()
    assert set(tuple_set(AngularMiner(40)(embeddings, labels))) <= set(tuple_set(AngularMiner(20)(embeddings, labels)))
