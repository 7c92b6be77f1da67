from __future__ import annotations

import pytest
import torch
from miner_checks import candidate_rows, euclidean, random_batch, random_ref_batch
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.miners import distance_weighted_miner as pml_module

from textdml.miners.base import label_masks
from textdml.miners.distance_weighted import DistanceWeightedMiner


def naive_probabilities(embeddings, labels, ref, ref_labels, cutoff, nonzero_loss_cutoff):
    """Wu et al.'s weights 1 / q(d), written per anchor and per negative."""
    ref_rows = embeddings if ref is None else ref
    dim = embeddings.shape[1]
    probabilities = torch.zeros(len(embeddings), len(ref_rows), dtype=torch.float64)
    for a in range(len(embeddings)):
        _, negatives = candidate_rows(labels, ref_labels, a)
        for n in negatives:
            d = max(euclidean(embeddings[a], ref_rows[n]), cutoff)
            if d < nonzero_loss_cutoff:
                probabilities[a, n] = d ** (2 - dim) * (1 - d**2 / 4) ** (-(dim - 3) / 2)
        if probabilities[a].sum() > 0:
            probabilities[a] /= probabilities[a].sum()
    return probabilities


def mined_probabilities(miner, embeddings, labels, ref=None, ref_labels=None):
    ref_rows = embeddings if ref is None else ref
    dist = miner.distance(embeddings, ref_rows)
    _, negative = label_masks(labels, ref_labels)
    return miner.negative_probabilities(dist, negative, embeddings.shape[1])


@pytest.mark.parametrize("use_ref", [False, True])
@pytest.mark.parametrize("cutoffs", [(0.5, 1.4), (0.0, 1.2)])
def test_probabilities_match_formula(use_ref, cutoffs):
    embeddings, labels, ref, ref_labels = random_ref_batch() if use_ref else (*random_batch(dim=6), None, None)
    miner = DistanceWeightedMiner(*cutoffs)
    expected = naive_probabilities(embeddings, labels, ref, ref_labels, *cutoffs)
    torch.testing.assert_close(mined_probabilities(miner, embeddings, labels, ref, ref_labels), expected)


def test_probabilities_match_pml_weights(monkeypatch):
    captured = {}

    def capture(labels, ref_labels=None, t_per_anchor=None, weights=None):
        captured["weights"] = weights
        empty = torch.empty(0, dtype=torch.long)
        return empty, empty, empty

    monkeypatch.setattr(pml_module.lmu, "get_random_triplet_indices", capture)
    embeddings, labels = random_batch(dim=6)
    pml_miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)(embeddings, labels)
    ours = mined_probabilities(DistanceWeightedMiner(0.5, 1.4), embeddings, labels)
    torch.testing.assert_close(ours, captured["weights"].nan_to_num(0.0))


@pytest.mark.parametrize("use_ref", [False, True])
def test_every_positive_pair_gets_one_allowed_negative(use_ref):
    embeddings, labels, ref, ref_labels = random_ref_batch() if use_ref else (*random_batch(dim=6), None, None)
    ref_rows, ref_lab = (embeddings, labels) if ref is None else (ref, ref_labels)
    miner = DistanceWeightedMiner(0.5, 1.3, generator=torch.Generator().manual_seed(0))
    for _ in range(20):
        triplets = miner(embeddings, labels, ref, ref_labels)
        pairs = sorted(zip(triplets.anchor.tolist(), triplets.positive.tolist(), strict=True))
        has_negative = mined_probabilities(miner, embeddings, labels, ref, ref_labels).sum(dim=1) > 0
        expected = sorted(
            (a, p) for a in range(len(embeddings)) if has_negative[a] for p in candidate_rows(labels, ref_labels, a)[0]
        )
        assert pairs == expected
        assert (labels[triplets.anchor] != ref_lab[triplets.negative]).all()
        # Never beyond nonzero_loss_cutoff: those negatives have zero loss and zero weight.
        dist = miner.distance(embeddings[triplets.anchor], ref_rows[triplets.negative]).diagonal()
        assert (dist < 1.3).all()


def test_sampling_frequencies_follow_the_weights():
    # Two classes of 20: each call draws 19 negatives per anchor, 50 calls give 950 draws.
    embeddings, labels = random_batch(n=40, dim=4, num_classes=2)
    miner = DistanceWeightedMiner(0.5, 1.6, generator=torch.Generator().manual_seed(0))
    counts = torch.zeros(40, 40, dtype=torch.float64)
    for _ in range(50):
        triplets = miner(embeddings, labels)
        ones = torch.ones(len(triplets), dtype=torch.float64)
        counts.index_put_((triplets.anchor, triplets.negative), ones, accumulate=True)
    frequencies = counts / counts.sum(dim=1, keepdim=True)
    probabilities = mined_probabilities(miner, embeddings, labels)
    assert (frequencies - probabilities).abs().max() < 0.05


def test_same_generator_seed_gives_same_triplets():
    embeddings, labels = random_batch(dim=6)
    first = DistanceWeightedMiner(generator=torch.Generator().manual_seed(3))(embeddings, labels)
    second = DistanceWeightedMiner(generator=torch.Generator().manual_seed(3))(embeddings, labels)
    assert torch.equal(first.negative, second.negative) and torch.equal(first.anchor, second.anchor)


def test_large_dimension_stays_finite():
    # (2 - D) log d is hundreds for D = 768: without the per-anchor maximum exp() overflows.
    embeddings, labels = random_batch(n=8, dim=768)
    probabilities = mined_probabilities(DistanceWeightedMiner(), embeddings, labels)
    assert torch.isfinite(probabilities).all()
    assert len(DistanceWeightedMiner()(embeddings, labels)) > 0


def test_rejects_inverted_cutoffs():
    with pytest.raises(ValueError, match="cutoff"):
        DistanceWeightedMiner(cutoff=1.5, nonzero_loss_cutoff=1.4)
