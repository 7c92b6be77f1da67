from __future__ import annotations

import itertools

import pytest
from miner_checks import candidate_rows, cosine, euclidean, random_batch, random_ref_batch, tuple_set
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import miners as pml_miners

from textdml.distances import CosineSimilarityDistance
from textdml.miners.batch_easy_hard import BatchEasyHardMiner

VALID = [
    (pos, neg)
    for pos, neg in itertools.product(["easy", "semihard", "hard", "all"], repeat=2)
    if not (pos == neg == "semihard") and not ({pos, neg} == {"semihard", "all"})
]


def naive_pick(candidates, farness, farthest, condition=lambda f: True):
    allowed = [j for j in candidates if condition(farness[j])]
    if not allowed:
        return None
    return max(allowed, key=lambda j: farness[j]) if farthest else min(allowed, key=lambda j: farness[j])


def naive_easy_hard(embeddings, labels, ref, ref_labels, pos_strategy, neg_strategy, similarity, pos_range, neg_range):
    ref_rows = embeddings if ref is None else ref
    pos_pairs, neg_pairs = [], []
    for a in range(len(embeddings)):
        value = {j: (cosine if similarity else euclidean)(embeddings[a], ref_rows[j]) for j in range(len(ref_rows))}
        farness = {j: -v if similarity else v for j, v in value.items()}
        positives, negatives = candidate_rows(labels, ref_labels, a)
        if pos_range:
            positives = [j for j in positives if pos_range[0] <= value[j] <= pos_range[1]]
        if neg_range:
            negatives = [j for j in negatives if neg_range[0] <= value[j] <= neg_range[1]]
        pos_farthest, neg_farthest = pos_strategy != "easy", neg_strategy == "easy"
        if pos_strategy == "semihard":
            n = naive_pick(negatives, farness, neg_farthest)
            p = None if n is None else naive_pick(positives, farness, True, lambda f, bound=farness[n]: f < bound)
        elif neg_strategy == "semihard":
            p = naive_pick(positives, farness, pos_farthest)
            n = None if p is None else naive_pick(negatives, farness, False, lambda f, bound=farness[p]: f > bound)
        else:
            p = naive_pick(positives, farness, pos_farthest)
            n = naive_pick(negatives, farness, neg_farthest)
        if "all" not in (pos_strategy, neg_strategy):
            if p is not None and n is not None:
                pos_pairs.append((a, p))
                neg_pairs.append((a, n))
            continue
        pos_pairs += [(a, j) for j in positives] if pos_strategy == "all" else ([(a, p)] if p is not None else [])
        neg_pairs += [(a, j) for j in negatives] if neg_strategy == "all" else ([(a, n)] if n is not None else [])
    return sorted(pos_pairs), sorted(neg_pairs)


def batch(use_ref):
    return random_ref_batch() if use_ref else (*random_batch(n=16), None, None)


@pytest.mark.parametrize("pos_strategy,neg_strategy", VALID)
@pytest.mark.parametrize("similarity", [False, True])
@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_naive_loop(pos_strategy, neg_strategy, similarity, use_ref):
    embeddings, labels, ref, ref_labels = batch(use_ref)
    miner = BatchEasyHardMiner(pos_strategy, neg_strategy, distance=CosineSimilarityDistance() if similarity else None)
    expected = naive_easy_hard(embeddings, labels, ref, ref_labels, pos_strategy, neg_strategy, similarity, None, None)
    assert tuple_set(miner(embeddings, labels, ref, ref_labels)) == expected


@pytest.mark.parametrize("pos_strategy,neg_strategy", VALID)
@pytest.mark.parametrize("similarity", [False, True])
@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_pml(pos_strategy, neg_strategy, similarity, use_ref):
    embeddings, labels, ref, ref_labels = batch(use_ref)
    ours = BatchEasyHardMiner(pos_strategy, neg_strategy, distance=CosineSimilarityDistance() if similarity else None)
    pml_distance = pml_distances.CosineSimilarity() if similarity else pml_distances.LpDistance()
    theirs = pml_miners.BatchEasyHardMiner(pos_strategy, neg_strategy, distance=pml_distance)
    assert tuple_set(ours(embeddings, labels, ref, ref_labels)) == tuple_set(
        theirs(embeddings, labels, ref, ref_labels)
    )


RANGES = {"allowed_pos_range": (0.9, 1.3), "allowed_neg_range": (1.0, 1.6)}


@pytest.mark.parametrize(
    "pos_strategy,neg_strategy", [("easy", "semihard"), ("hard", "hard"), ("all", "easy"), ("hard", "all")]
)
def test_allowed_ranges_match_naive_loop(pos_strategy, neg_strategy):
    embeddings, labels = random_batch(n=16)
    ours = BatchEasyHardMiner(pos_strategy, neg_strategy, **RANGES)(embeddings, labels)
    expected = naive_easy_hard(embeddings, labels, None, None, pos_strategy, neg_strategy, False, *RANGES.values())
    assert tuple_set(ours) == expected


@pytest.mark.parametrize("pos_strategy,neg_strategy", [("easy", "semihard"), ("hard", "hard"), ("semihard", "easy")])
def test_allowed_ranges_match_pml(pos_strategy, neg_strategy):
    # pytorch-metric-learning ignores the range of an "all" kind; every single pick agrees.
    embeddings, labels = random_batch(n=16)
    ours = BatchEasyHardMiner(pos_strategy, neg_strategy, **RANGES)(embeddings, labels)
    theirs = pml_miners.BatchEasyHardMiner(pos_strategy, neg_strategy, **RANGES)(embeddings, labels)
    assert tuple_set(ours) == tuple_set(theirs)


@pytest.mark.parametrize(
    "pos_strategy,neg_strategy",
    [("semihard", "semihard"), ("all", "semihard"), ("semihard", "all"), ("easiest", "hard")],
)
def test_rejects_invalid_strategies(pos_strategy, neg_strategy):
    with pytest.raises(ValueError):
        BatchEasyHardMiner(pos_strategy, neg_strategy)
