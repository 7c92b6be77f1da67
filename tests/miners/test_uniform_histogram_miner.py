from __future__ import annotations

from collections import Counter

import pytest
import torch
from miner_checks import candidate_rows, cosine, euclidean, random_batch, random_ref_batch, tuple_set
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import miners as pml_miners

from textdml.distances import CosineSimilarityDistance
from textdml.miners.uniform_histogram import UniformHistogramMiner


def naive_bins(values: list[float], num_bins: int) -> list[int]:
    """Each value's bin among ``num_bins`` equal-width bins from min to max (the last one closed)."""
    low, high = min(values), max(values)
    edges = torch.linspace(low, high, num_bins + 1, dtype=torch.float64).tolist()
    bins = []
    for v in values:
        k = next((k for k in range(num_bins) if edges[k] <= v < edges[k + 1]), num_bins - 1)
        bins.append(k)
    return bins


def naive_pair_values(embeddings, labels, ref, ref_labels, similarity):
    ref_rows = embeddings if ref is None else ref
    measure = cosine if similarity else euclidean
    pos, neg = {}, {}
    for a in range(len(embeddings)):
        positives, negatives = candidate_rows(labels, ref_labels, a)
        pos.update({(a, p): measure(embeddings[a], ref_rows[p]) for p in positives})
        neg.update({(a, n): measure(embeddings[a], ref_rows[n]) for n in negatives})
    return pos, neg


@pytest.mark.parametrize("similarity", [False, True])
@pytest.mark.parametrize("use_ref", [False, True])
def test_each_non_empty_bin_gives_its_count_from_its_own_pairs(similarity, use_ref):
    embeddings, labels, ref, ref_labels = random_ref_batch() if use_ref else (*random_batch(), None, None)
    miner = UniformHistogramMiner(num_bins=6, pos_per_bin=3, neg_per_bin=4,
                                  distance=CosineSimilarityDistance() if similarity else None,
                                  generator=torch.Generator().manual_seed(0))
    mined = miner(embeddings, labels, ref, ref_labels)
    pos_values, neg_values = naive_pair_values(embeddings, labels, ref, ref_labels, similarity)
    mined_pos, mined_neg = tuple_set(mined)
    for values, drawn, per_bin in ((pos_values, mined_pos, 3), (neg_values, mined_neg, 4)):
        pairs = list(values)
        bins = dict(zip(pairs, naive_bins([values[p] for p in pairs], 6), strict=True))
        assert set(drawn) <= set(pairs)
        drawn_per_bin = Counter(bins[p] for p in drawn)
        assert drawn_per_bin == {k: per_bin for k in set(bins.values())}


@pytest.mark.parametrize("use_ref", [False, True])
@pytest.mark.parametrize("similarity", [False, True])
def test_same_pairs_as_pml_under_the_same_seed(use_ref, similarity):
    embeddings, labels, ref, ref_labels = random_ref_batch() if use_ref else (*random_batch(n=20), None, None)
    ours = UniformHistogramMiner(num_bins=10, pos_per_bin=5, neg_per_bin=7,
                                 distance=CosineSimilarityDistance() if similarity else None)
    theirs = pml_miners.UniformHistogramMiner(num_bins=10, pos_per_bin=5, neg_per_bin=7,
                                              distance=pml_distances.CosineSimilarity() if similarity else
                                              pml_distances.LpDistance())
    torch.manual_seed(3)
    mined = ours(embeddings, labels, ref, ref_labels)
    torch.manual_seed(3)
    expected = theirs(embeddings, labels, ref, ref_labels)
    # Same draws in the same order, not only the same set.
    for got, want in zip((mined.anchor_pos, mined.positive, mined.anchor_neg, mined.negative), expected, strict=True):
        assert torch.equal(got, want)


def test_generator_makes_mining_reproducible():
    embeddings, labels = random_batch()
    first = UniformHistogramMiner(generator=torch.Generator().manual_seed(1))(embeddings, labels)
    second = UniformHistogramMiner(generator=torch.Generator().manual_seed(1))(embeddings, labels)
    assert tuple_set(first) == tuple_set(second)


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="num_bins"):
        UniformHistogramMiner(num_bins=0)
