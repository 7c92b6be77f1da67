from __future__ import annotations

import pytest
from miner_checks import candidate_rows, cosine, euclidean, random_batch, random_ref_batch, tuple_set
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import miners as pml_miners

from textdml.distances import LpDistance
from textdml.miners.multi_similarity import MultiSimilarityMiner


def naive_multi_similarity(embeddings, labels, ref, ref_labels, epsilon, similarity):
    ref_rows = embeddings if ref is None else ref
    pos_pairs, neg_pairs = [], []
    for a in range(len(embeddings)):
        positives, negatives = candidate_rows(labels, ref_labels, a)
        if not positives or not negatives:
            continue
        # Closeness: larger is more similar, whichever the measure.
        close = {
            j: cosine(embeddings[a], ref_rows[j]) if similarity else -euclidean(embeddings[a], ref_rows[j])
            for j in positives + negatives
        }
        least_close_positive = min(close[p] for p in positives)
        most_close_negative = max(close[n] for n in negatives)
        pos_pairs += [(a, p) for p in positives if close[p] - epsilon < most_close_negative]
        neg_pairs += [(a, n) for n in negatives if close[n] + epsilon > least_close_positive]
    return sorted(pos_pairs), sorted(neg_pairs)


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("similarity", [True, False])
@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_naive_loop_and_pml(epsilon, similarity, use_ref):
    embeddings, labels, ref, ref_labels = random_ref_batch() if use_ref else (*random_batch(), None, None)
    ours = MultiSimilarityMiner(epsilon, distance=None if similarity else LpDistance())
    theirs = pml_miners.MultiSimilarityMiner(
        epsilon, distance=pml_distances.CosineSimilarity() if similarity else pml_distances.LpDistance()
    )
    mined = tuple_set(ours(embeddings, labels, ref, ref_labels))
    assert mined == naive_multi_similarity(embeddings, labels, ref, ref_labels, epsilon, similarity)
    assert mined == tuple_set(theirs(embeddings, labels, ref, ref_labels))
