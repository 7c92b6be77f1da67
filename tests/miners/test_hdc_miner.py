from __future__ import annotations

import math

import pytest
from miner_checks import candidate_rows, cosine, euclidean, random_batch, random_ref_batch, tuple_set
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import miners as pml_miners

from textdml.distances import CosineSimilarityDistance
from textdml.miners.hdc import HDCMiner


def naive_hdc(embeddings, labels, ref, ref_labels, fraction, similarity, pos_pairs=True, neg_pairs=True):
    ref_rows = embeddings if ref is None else ref
    positive, negative = [], []
    for a in range(len(embeddings)):
        positives, negatives = candidate_rows(labels, ref_labels, a)
        for j in positives + negatives:
            value = cosine(embeddings[a], ref_rows[j]) if similarity else euclidean(embeddings[a], ref_rows[j])
            farness = -value if similarity else value
            (positive if j in positives else negative).append((farness, (a, j)))
    # Hardest first: far positives, close negatives.
    positive.sort(reverse=True)
    negative.sort()
    if pos_pairs:
        positive = positive[: math.ceil(fraction * len(positive))]
    if neg_pairs:
        negative = negative[: math.ceil(fraction * len(negative))]
    return sorted(pair for _, pair in positive), sorted(pair for _, pair in negative)


@pytest.mark.parametrize("fraction", [0.3, 0.5, 1.0])
@pytest.mark.parametrize("similarity", [False, True])
@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_naive_loop_and_pml(fraction, similarity, use_ref):
    embeddings, labels, ref, ref_labels = random_ref_batch() if use_ref else (*random_batch(), None, None)
    ours = HDCMiner(fraction, distance=CosineSimilarityDistance() if similarity else None)
    theirs = pml_miners.HDCMiner(
        fraction, distance=pml_distances.CosineSimilarity() if similarity else pml_distances.LpDistance()
    )
    mined = tuple_set(ours(embeddings, labels, ref, ref_labels))
    assert mined == naive_hdc(embeddings, labels, ref, ref_labels, fraction, similarity)
    assert mined == tuple_set(theirs(embeddings, labels, ref, ref_labels))


@pytest.mark.parametrize("pos_pairs,neg_pairs", [(False, True), (True, False)])
def test_unfiltered_kind_keeps_every_pair(pos_pairs, neg_pairs):
    embeddings, labels = random_batch()
    mined = HDCMiner(0.4, pos_pairs=pos_pairs, neg_pairs=neg_pairs)(embeddings, labels)
    assert tuple_set(mined) == naive_hdc(embeddings, labels, None, None, 0.4, False, pos_pairs, neg_pairs)


def test_rejects_fraction_outside_unit_interval():
    with pytest.raises(ValueError, match="filter_percentage"):
        HDCMiner(0.0)
