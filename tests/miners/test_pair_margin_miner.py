from __future__ import annotations

import pytest
from miner_checks import candidate_rows, cosine, euclidean, random_batch, random_ref_batch, tuple_set
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import miners as pml_miners

from textdml.distances import CosineSimilarityDistance
from textdml.miners.pair_margin import PairMarginMiner


def naive_pair_margin(embeddings, labels, ref, ref_labels, pos_margin, neg_margin, similarity):
    ref_rows = embeddings if ref is None else ref
    pos_pairs, neg_pairs = [], []
    for a in range(len(embeddings)):
        positives, negatives = candidate_rows(labels, ref_labels, a)
        for j in positives + negatives:
            if similarity:
                s = cosine(embeddings[a], ref_rows[j])
                too_far, too_close = s < pos_margin, s > neg_margin
            else:
                d = euclidean(embeddings[a], ref_rows[j])
                too_far, too_close = d > pos_margin, d < neg_margin
            if j in positives and too_far:
                pos_pairs.append((a, j))
            if j in negatives and too_close:
                neg_pairs.append((a, j))
    return sorted(pos_pairs), sorted(neg_pairs)


@pytest.mark.parametrize("similarity,margins", [(False, (0.2, 0.8)), (False, (1.0, 1.4)), (True, (0.5, 0.1))])
@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_naive_loop_and_pml(similarity, margins, use_ref):
    embeddings, labels, ref, ref_labels = random_ref_batch() if use_ref else (*random_batch(), None, None)
    ours = PairMarginMiner(*margins, distance=CosineSimilarityDistance() if similarity else None)
    theirs = pml_miners.PairMarginMiner(
        *margins, distance=pml_distances.CosineSimilarity() if similarity else pml_distances.LpDistance()
    )
    mined = tuple_set(ours(embeddings, labels, ref, ref_labels))
    assert mined == naive_pair_margin(embeddings, labels, ref, ref_labels, *margins, similarity)
    assert mined == tuple_set(theirs(embeddings, labels, ref, ref_labels))
