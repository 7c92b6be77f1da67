from __future__ import annotations

import pytest
import torch
from miner_checks import candidate_rows, cosine, euclidean, random_batch, random_ref_batch, tuple_set
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import miners as pml_miners

from textdml.distances import CosineSimilarityDistance, LpDistance
from textdml.miners.triplet_margin import TripletMarginMiner

TYPES = ["all", "hard", "semihard", "easy"]


def naive_triplet_margin(embeddings, labels, ref, ref_labels, margin, kind, similarity):
    ref_rows = embeddings if ref is None else ref
    kept = []
    for a in range(len(embeddings)):
        positives, negatives = candidate_rows(labels, ref_labels, a)
        for p in positives:
            for n in negatives:
                if similarity:
                    m = cosine(embeddings[a], ref_rows[p]) - cosine(embeddings[a], ref_rows[n])
                else:
                    m = euclidean(embeddings[a], ref_rows[n]) - euclidean(embeddings[a], ref_rows[p])
                if kind == "easy":
                    keep = m > margin
                else:
                    keep = m <= margin and {"all": True, "hard": m <= 0, "semihard": m > 0}[kind]
                if keep:
                    kept.append((a, p, n))
    return sorted(kept)


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("similarity", [False, True])
@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_naive_loop(kind, similarity, use_ref):
    if use_ref:
        embeddings, labels, ref, ref_labels = random_ref_batch()
    else:
        (embeddings, labels), ref, ref_labels = random_batch(), None, None
    margin = 0.1 if similarity else 0.3
    miner = TripletMarginMiner(margin, kind, distance=CosineSimilarityDistance() if similarity else LpDistance())
    expected = naive_triplet_margin(embeddings, labels, ref, ref_labels, margin, kind, similarity)
    assert tuple_set(miner(embeddings, labels, ref, ref_labels)) == expected


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("similarity", [False, True])
@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_pml(kind, similarity, use_ref):
    embeddings, labels, ref, ref_labels = random_ref_batch() if use_ref else (*random_batch(n=16), None, None)
    ours = TripletMarginMiner(0.2, kind, distance=CosineSimilarityDistance() if similarity else None)
    pml_distance = pml_distances.CosineSimilarity() if similarity else pml_distances.LpDistance()
    theirs = pml_miners.TripletMarginMiner(0.2, type_of_triplets=kind, distance=pml_distance)
    assert tuple_set(ours(embeddings, labels, ref, ref_labels)) == tuple_set(
        theirs(embeddings, labels, ref, ref_labels)
    )


def test_types_partition_all_triplets():
    embeddings, labels = random_batch()
    found = {kind: set(tuple_set(TripletMarginMiner(0.2, kind)(embeddings, labels))) for kind in TYPES}
    assert found["hard"] | found["semihard"] == found["all"]
    assert not found["all"] & found["easy"]


def test_rejects_unknown_type():
    with pytest.raises(ValueError, match="type_of_triplets"):
        TripletMarginMiner(0.2, "hardest")  # type: ignore[arg-type]


def test_returns_long_indices():
    embeddings, labels = random_batch(dtype=torch.float32)
    triplets = TripletMarginMiner()(embeddings, labels)
    assert triplets.anchor.dtype == triplets.positive.dtype == triplets.negative.dtype == torch.long
