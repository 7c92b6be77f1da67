from __future__ import annotations

import pytest
from miner_checks import candidate_rows, cosine, euclidean, random_batch, random_ref_batch, tuple_set
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import miners as pml_miners

from textdml.distances import CosineSimilarityDistance
from textdml.miners import TripletIndices
from textdml.miners.batch_hard import BatchHardMiner


def naive_batch_hard(embeddings, labels, ref, ref_labels, similarity):
    ref_rows = embeddings if ref is None else ref
    triplets = []
    for a in range(len(embeddings)):
        positives, negatives = candidate_rows(labels, ref_labels, a)
        if not positives or not negatives:
            continue
        if similarity:
            farness = {j: -cosine(embeddings[a], ref_rows[j]) for j in range(len(ref_rows))}
        else:
            farness = {j: euclidean(embeddings[a], ref_rows[j]) for j in range(len(ref_rows))}
        hardest_positive = max(positives, key=lambda j: farness[j])
        hardest_negative = min(negatives, key=lambda j: farness[j])
        triplets.append((a, hardest_positive, hardest_negative))
    return sorted(triplets)


@pytest.mark.parametrize("similarity", [False, True])
@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_naive_loop_and_pml(similarity, use_ref):
    embeddings, labels, ref, ref_labels = random_ref_batch() if use_ref else (*random_batch(n=16), None, None)
    ours = BatchHardMiner(distance=CosineSimilarityDistance() if similarity else None)
    theirs = pml_miners.BatchHardMiner(
        distance=pml_distances.CosineSimilarity() if similarity else pml_distances.LpDistance()
    )
    mined = ours(embeddings, labels, ref, ref_labels)
    assert isinstance(mined, TripletIndices)
    expected = naive_batch_hard(embeddings, labels, ref, ref_labels, similarity)
    assert tuple_set(mined) == expected == tuple_set(theirs(embeddings, labels, ref, ref_labels))


def test_one_triplet_per_anchor():
    embeddings, labels = random_batch(n=16)
    assert sorted(BatchHardMiner()(embeddings, labels).anchor.tolist()) == list(range(16))
