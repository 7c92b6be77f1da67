"""Behaviour every miner shares: registry names, dtypes, degenerate batches, composition with losses."""

from __future__ import annotations

import warnings

import pytest
import torch
from miner_checks import random_batch, random_ref_batch, tuple_set

from textdml.losses import ContrastiveLoss, TripletLoss
from textdml.miners import PairIndices, TripletIndices
from textdml.miners.angular import AngularMiner
from textdml.miners.batch_all import BatchAllMiner
from textdml.miners.batch_easy_hard import BatchEasyHardMiner
from textdml.miners.batch_hard import BatchHardMiner
from textdml.miners.distance_weighted import DistanceWeightedMiner
from textdml.miners.hdc import HDCMiner
from textdml.miners.maximum_loss import MaximumLossMiner
from textdml.miners.multi_similarity import MultiSimilarityMiner
from textdml.miners.pair_margin import PairMarginMiner
from textdml.miners.triplet_margin import TripletMarginMiner
from textdml.miners.uniform_histogram import UniformHistogramMiner
from textdml.registry import MINERS

# Factories, so that a sampling miner starts from the same seed in every call.
FACTORIES = {
    "triplet_margin": lambda: TripletMarginMiner(margin=0.2),
    "batch_hard": BatchHardMiner,
    "batch_all": lambda: BatchAllMiner(margin=0.2),
    "batch_easy_hard": BatchEasyHardMiner,
    "angular": lambda: AngularMiner(angle=20),
    "distance_weighted": lambda: DistanceWeightedMiner(generator=torch.Generator().manual_seed(0)),
    "hdc": HDCMiner,
    "maximum_loss": lambda: MaximumLossMiner(TripletLoss(margin=0.2, reduction="none"), k=20),
    "maximum_loss_pairs": lambda: MaximumLossMiner(ContrastiveLoss(reduction="none"), k=20, tuple_kind="pairs"),
    "multi_similarity": MultiSimilarityMiner,
    "pair_margin": PairMarginMiner,
    "uniform_histogram": lambda: UniformHistogramMiner(num_bins=10, generator=torch.Generator().manual_seed(0)),
}
NAMES = list(FACTORIES)
# Threshold and top-k miners can flip borderline tuples when inputs are rounded to bfloat16.
SAMPLING = {"distance_weighted", "uniform_histogram"}


def registry_name(name: str) -> str:
    return name.removesuffix("_pairs")


def jaccard(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / max(len(a | b), 1)


def flat_tuples(indices) -> list:
    found = tuple_set(indices)
    return found if isinstance(indices, TripletIndices) else [(0, *t) for t in found[0]] + [(1, *t) for t in found[1]]


@pytest.mark.parametrize("name", NAMES)
def test_registered_under_file_stem_with_citation(name):
    miner = FACTORIES[name]()
    assert MINERS.get(registry_name(name)) is type(miner)
    assert type(miner).citation and type(miner).citation.startswith("@")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("use_ref", [False, True])
def test_indices_are_long_and_in_range(name, use_ref):
    embeddings, labels, ref, ref_labels = random_ref_batch() if use_ref else (*random_batch(), None, None)
    mined = FACTORIES[name]()(embeddings.float(), labels, None if ref is None else ref.float(), ref_labels)
    num_ref = len(embeddings if ref is None else ref)
    if isinstance(mined, TripletIndices):
        anchors, others = [mined.anchor], [mined.positive, mined.negative]
    else:
        anchors, others = [mined.anchor_pos, mined.anchor_neg], [mined.positive, mined.negative]
    assert len(mined) > 0
    for t in anchors + others:
        assert t.dtype == torch.long
    assert all(((t >= 0) & (t < len(embeddings))).all() for t in anchors)
    assert all(((t >= 0) & (t < num_ref)).all() for t in others)
    if not use_ref:
        # Without a reference set a row is never paired with itself.
        pos_anchor = mined.anchor if isinstance(mined, TripletIndices) else mined.anchor_pos
        assert (pos_anchor != mined.positive).all()


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_mines_like_float32(name):
    embeddings, labels = random_batch(n=16, dtype=torch.float32)
    in_bf16 = FACTORIES[name]()(embeddings.bfloat16(), labels)
    # The miner computes in float32: bfloat16 inputs mine exactly as their float32 values.
    assert tuple_set(in_bf16) == tuple_set(FACTORIES[name]()(embeddings.bfloat16().float(), labels))
    if name not in SAMPLING:
        assert jaccard(flat_tuples(in_bf16), flat_tuples(FACTORIES[name]()(embeddings, labels))) > 0.6


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "labels", [torch.zeros(6, dtype=torch.long), torch.arange(6), torch.zeros(1, dtype=torch.long)]
)
def test_degenerate_batches_give_no_triplet(name, labels):
    # One class: no negative. All distinct: no positive. Either way no triplet, and no crash.
    embeddings = torch.randn(len(labels), 8)
    mined = FACTORIES[name]()(embeddings, labels)
    if isinstance(mined, TripletIndices):
        assert len(mined) == 0
    else:
        assert len(mined.anchor_pos) == 0 or len(mined.anchor_neg) == 0


@pytest.mark.parametrize("name", NAMES)
def test_identical_embeddings_do_not_crash(name):
    mined = FACTORIES[name]()(torch.ones(8, 4), torch.arange(8) % 4)
    assert isinstance(mined, (PairIndices, TripletIndices))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("loss", [TripletLoss(margin=0.2), ContrastiveLoss(margin=0.5)], ids=["triplet", "contrastive"])
def test_composes_with_losses(name, loss):
    embeddings, labels = random_batch(n=16, dtype=torch.float32)
    embeddings.requires_grad_(True)
    indices = FACTORIES[name]()(embeddings, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a miner may leave one kind of pair empty; the loss says so
        value = loss(embeddings, labels, indices=indices)
    assert torch.isfinite(value)
    value.backward()
    assert embeddings.grad is not None and torch.isfinite(embeddings.grad).all()


def test_ref_labels_are_required_with_ref_embeddings():
    embeddings, labels = random_batch()
    with pytest.raises(ValueError, match="ref_labels"):
        BatchHardMiner()(embeddings, labels, ref_embeddings=embeddings)
