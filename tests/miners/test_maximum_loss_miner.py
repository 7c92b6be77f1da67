from __future__ import annotations

import pytest
import torch
from miner_checks import candidate_rows, euclidean, random_batch, random_ref_batch, tuple_set, unit

from textdml.losses import ContrastiveLoss, InfoNCELoss, TripletLoss
from textdml.miners import PairIndices, TripletIndices
from textdml.miners.maximum_loss import MaximumLossMiner


def naive_top_triplets(embeddings, labels, ref, ref_labels, margin, k):
    ref_rows = embeddings if ref is None else ref
    scored = []
    for a in range(len(embeddings)):
        positives, negatives = candidate_rows(labels, ref_labels, a)
        for p in positives:
            for n in negatives:
                loss = max(euclidean(embeddings[a], ref_rows[p]) - euclidean(embeddings[a], ref_rows[n]) + margin, 0.0)
                scored.append((loss, (a, p, n)))
    scored.sort(reverse=True)
    return sorted(t for _, t in scored[:k])


def naive_top_pairs(embeddings, labels, ref, ref_labels, margin, k):
    """Contrastive loss on cosine distance, power 2: ``d^2`` for positives, ``relu(margin - d)^2`` for negatives."""
    ref_rows = embeddings if ref is None else ref
    scored = []
    for a in range(len(embeddings)):
        positives, negatives = candidate_rows(labels, ref_labels, a)
        for j in positives + negatives:
            d = 1 - float(unit(embeddings[a]) @ unit(ref_rows[j]))
            loss = d**2 if j in positives else max(margin - d, 0.0) ** 2
            scored.append((loss, j in positives, (a, j)))
    scored.sort(key=lambda s: s[0], reverse=True)
    top = scored[:k]
    return sorted(pair for _, pos, pair in top if pos), sorted(pair for _, pos, pair in top if not pos)


@pytest.mark.parametrize("k", [1, 7, 10_000])
@pytest.mark.parametrize("use_ref", [False, True])
def test_triplets_match_naive_top_k(k, use_ref):
    embeddings, labels, ref, ref_labels = random_ref_batch() if use_ref else (*random_batch(), None, None)
    # A margin above every distance gap makes every loss positive, so the top k has no ties.
    miner = MaximumLossMiner(TripletLoss(margin=2.5, reduction="none"), k=k)
    mined = miner(embeddings, labels, ref, ref_labels)
    assert isinstance(mined, TripletIndices)
    assert tuple_set(mined) == naive_top_triplets(embeddings, labels, ref, ref_labels, 2.5, k)


@pytest.mark.parametrize("k", [1, 9, 10_000])
@pytest.mark.parametrize("use_ref", [False, True])
def test_pairs_match_naive_top_k(k, use_ref):
    embeddings, labels, ref, ref_labels = random_ref_batch() if use_ref else (*random_batch(), None, None)
    miner = MaximumLossMiner(ContrastiveLoss(margin=2.5, reduction="none"), k=k, tuple_kind="pairs")
    mined = miner(embeddings, labels, ref, ref_labels)
    assert isinstance(mined, PairIndices)
    assert tuple_set(mined) == naive_top_pairs(embeddings, labels, ref, ref_labels, 2.5, k)


def test_registry_name_builds_the_loss_without_reduction():
    miner = MaximumLossMiner("triplet", k=3)
    assert isinstance(miner.loss, TripletLoss) and miner.loss.reduction == "none"
    embeddings, labels = random_batch()
    assert len(miner(embeddings, labels)) == 3


@pytest.mark.parametrize(
    "loss,match",
    [(TripletLoss(), "reduction='none'"), (InfoNCELoss(), "does not take mined tuples")],
)
def test_rejects_losses_that_cannot_score_tuples(loss, match):
    with pytest.raises(ValueError, match=match):
        MaximumLossMiner(loss, k=3)


def test_mining_keeps_no_graph():
    embeddings, labels = random_batch(dtype=torch.float32)
    embeddings.requires_grad_(True)
    mined = MaximumLossMiner(TripletLoss(reduction="none"), k=4)(embeddings, labels)
    assert not mined.anchor.requires_grad
