from __future__ import annotations

import pytest
from miner_checks import candidate_rows, euclidean, random_batch, random_ref_batch, tuple_set
from pytorch_metric_learning import miners as pml_miners

from textdml.miners.batch_all import BatchAllMiner


def naive_batch_all(embeddings, labels, ref, ref_labels, margin):
    ref_rows = embeddings if ref is None else ref
    kept = []
    for a in range(len(embeddings)):
        positives, negatives = candidate_rows(labels, ref_labels, a)
        for p in positives:
            for n in negatives:
                ap, an = euclidean(embeddings[a], ref_rows[p]), euclidean(embeddings[a], ref_rows[n])
                if margin is None or ap - an + margin > 0:
                    kept.append((a, p, n))
    return sorted(kept)


@pytest.mark.parametrize("margin", [None, 0.0, 0.2])
@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_naive_loop(margin, use_ref):
    embeddings, labels, ref, ref_labels = random_ref_batch() if use_ref else (*random_batch(), None, None)
    mined = BatchAllMiner(margin)(embeddings, labels, ref, ref_labels)
    assert tuple_set(mined) == naive_batch_all(embeddings, labels, ref, ref_labels, margin)


def test_without_margin_equals_pml_all_triplets():
    embeddings, labels = random_batch()
    theirs = pml_miners.TripletMarginMiner(margin=10.0, type_of_triplets="all")(embeddings, labels)
    assert tuple_set(BatchAllMiner()(embeddings, labels)) == tuple_set(theirs)


def test_with_margin_equals_pml_all_violating():
    embeddings, labels = random_batch()
    theirs = pml_miners.TripletMarginMiner(margin=0.2, type_of_triplets="all")(embeddings, labels)
    assert tuple_set(BatchAllMiner(0.2)(embeddings, labels)) == tuple_set(theirs)
