"""InfoNCE, contrastive and triplet: naive references, sentence-transformers and PML parity."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from pair_checks import LABELS, REF_LABELS, assert_same_loss_and_gradient, randn, random_subset
from pytorch_metric_learning import losses as pml_losses
from sentence_transformers.sentence_transformer import losses as st_losses
from torch import nn

from textdml.distances import LpDistance
from textdml.losses import ContrastiveLoss, InfoNCELoss, TripletLoss
from textdml.losses.base import BaseLoss, DegenerateBatchWarning
from textdml.miners.base import PairIndices, TripletIndices, all_pairs, all_triplets

# One positive per row: the layout where multi-positive InfoNCE and PML's NT-Xent coincide.
TWO_PER_CLASS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


def cosine(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(u, v, dim=0)


def unit_euclidean(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (F.normalize(u, dim=0) - F.normalize(v, dim=0)).norm()


def resolve(x, labels, ref, ref_labels):
    """The naive references' view of the loss contract: (ref, ref_labels, labels, same_set)."""
    if labels is None:  # rows pair by position: anchor i with ref i, ref rows past N are negatives
        return ref, torch.arange(len(ref)), torch.arange(len(x)), False
    if ref is None:
        return x, labels, labels, True
    return ref, ref_labels, labels, False


def naive_info_nce(x, labels=None, ref=None, ref_labels=None, temperature=0.05, symmetric=False):
    ref, ref_labels, labels, same_set = resolve(x, labels, ref, ref_labels)

    def direction(queries, query_labels, keys, key_labels):
        losses = []
        for i in range(len(queries)):
            keep = [j for j in range(len(keys)) if not (same_set and j == i)]
            positives = [j for j in keep if key_labels[j] == query_labels[i]]
            if positives:
                logits = torch.stack([cosine(queries[i], keys[j]) / temperature for j in keep])
                positive_logits = torch.stack([cosine(queries[i], keys[j]) / temperature for j in positives])
                losses.append(torch.logsumexp(logits, 0) - torch.logsumexp(positive_logits, 0))
        return torch.stack(losses).mean()

    forward = direction(x, labels, ref, ref_labels)
    return (forward + direction(ref, ref_labels, x, labels)) / 2 if symmetric else forward


def naive_pairs(x, labels, ref, ref_labels):
    """Every (anchor, candidate, is_positive) of the batch, in any order."""
    ref, ref_labels, labels, same_set = resolve(x, labels, ref, ref_labels)
    return [
        (x[i], ref[j], bool(labels[i] == ref_labels[j]))
        for i in range(len(x))
        for j in range(len(ref))
        if not (same_set and i == j)
    ]


def naive_contrastive(x, labels=None, ref=None, ref_labels=None, margin=0.5, power=2.0, mean_nonzero=False, dist=None):
    dist = dist or (lambda u, v: 1 - cosine(u, v))
    pos, neg = [], []
    for anchor, candidate, is_positive in naive_pairs(x, labels, ref, ref_labels):
        d = dist(anchor, candidate)
        (pos if is_positive else neg).append(torch.relu(d) ** power if is_positive else torch.relu(margin - d) ** power)
    if not mean_nonzero:
        return torch.stack(pos + neg).mean()
    nonzero_mean = lambda terms: sum(terms) / max(sum(bool(t > 0) for t in terms), 1)  # noqa: E731
    return nonzero_mean(pos) + nonzero_mean(neg)


def naive_triplet(x, labels=None, ref=None, ref_labels=None, margin=0.05, swap=False):
    ref, ref_labels, labels, same_set = resolve(x, labels, ref, ref_labels)
    losses = []
    for a in range(len(x)):
        for p in range(len(ref)):
            if ref_labels[p] != labels[a] or (same_set and p == a):
                continue
            for n in range(len(ref)):
                if ref_labels[n] != labels[a]:
                    an = unit_euclidean(x[a], ref[n])
                    if swap:
                        an = torch.minimum(an, unit_euclidean(ref[p], ref[n]))
                    losses.append(torch.relu(unit_euclidean(x[a], ref[p]) - an + margin))
    losses = torch.stack(losses)
    return losses.sum() / max(int((losses > 0).sum()), 1)


# name -> (our loss, naive reference with the same settings)
LOSS_CASES: dict[str, tuple[Callable[[], BaseLoss], Callable[..., torch.Tensor]]] = {
    "info_nce": (lambda: InfoNCELoss(temperature=0.1), lambda *a: naive_info_nce(*a, temperature=0.1)),
    "info_nce_symmetric": (
        lambda: InfoNCELoss(temperature=0.1, symmetric=True),
        lambda *a: naive_info_nce(*a, temperature=0.1, symmetric=True),
    ),
    "contrastive": (lambda: ContrastiveLoss(margin=0.8), lambda *a: naive_contrastive(*a, margin=0.8)),
    "contrastive_nonzero": (
        lambda: ContrastiveLoss(margin=0.8, power=1.0, reduction="mean_nonzero"),
        lambda *a: naive_contrastive(*a, margin=0.8, power=1.0, mean_nonzero=True),
    ),
    "triplet": (lambda: TripletLoss(margin=0.3), lambda *a: naive_triplet(*a, margin=0.3)),
    "triplet_swap": (lambda: TripletLoss(margin=0.3, swap=True), lambda *a: naive_triplet(*a, margin=0.3, swap=True)),
}


@pytest.mark.parametrize("layout", ["same_set", "ref", "hard_negatives"])
@pytest.mark.parametrize("name", list(LOSS_CASES))
def test_matches_naive_reference(name: str, layout: str) -> None:
    loss_fn, naive = LOSS_CASES[name]
    x = randn(8, 5).requires_grad_()
    if layout == "same_set":
        labels, ref, ref_labels = LABELS, None, None
    elif layout == "ref":
        labels, ref, ref_labels = LABELS, randn(7, 5, seed=1).requires_grad_(), REF_LABELS
    else:  # anchors against cat(positives, negatives), pairs by position
        labels, ref, ref_labels = None, randn(16, 5, seed=1).requires_grad_(), None
    ours = loss_fn()(x, labels, ref_embeddings=ref, ref_labels=ref_labels)
    expected = naive(x, labels, ref, ref_labels)
    torch.testing.assert_close(ours, expected)
    inputs = [x] if ref is None else [x, ref]
    for got, want in zip(torch.autograd.grad(ours, inputs), torch.autograd.grad(expected, inputs), strict=True):
        torch.testing.assert_close(got, want)


def test_contrastive_single_row_warns() -> None:
    # One class or all-distinct labels still leave pairs to pull or push; a single row leaves none.
    with pytest.warns(DegenerateBatchWarning):
        assert ContrastiveLoss()(randn(1, 4), torch.tensor([0])).item() == 0


# --- sentence-transformers parity, through their embedding-level entry point ---------------------


def pair_batch(num_negatives: int) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Anchors, their candidates (positives then negatives) and the same as ST's column list."""
    anchors = randn(6, 8)
    columns = [randn(6, 8, seed=1 + k) for k in range(1 + num_negatives)]
    return anchors, torch.cat(columns), columns


@pytest.mark.parametrize("num_negatives", [0, 1, 2])
@pytest.mark.parametrize("symmetric", [False, True])
def test_info_nce_matches_st_multiple_negatives_ranking(symmetric: bool, num_negatives: int) -> None:
    anchors, candidates, columns = pair_batch(num_negatives)
    st_cls = st_losses.MultipleNegativesSymmetricRankingLoss if symmetric else st_losses.MultipleNegativesRankingLoss
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        st_loss = st_cls(nn.Identity(), scale=20.0)
    ours_inputs = [anchors.clone().requires_grad_(), candidates.clone().requires_grad_()]
    st_inputs = [anchors.clone().requires_grad_(), *(c.clone().requires_grad_() for c in columns)]
    ours = InfoNCELoss(temperature=0.05, symmetric=symmetric)(ours_inputs[0], ref_embeddings=ours_inputs[1])
    theirs = st_loss.compute_loss_from_embeddings(st_inputs, labels=None)
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours_inputs[0].grad, st_inputs[0].grad)
    torch.testing.assert_close(ours_inputs[1].grad, torch.cat([c.grad for c in st_inputs[1:]]))


def test_contrastive_is_twice_st_contrastive() -> None:
    # ST takes explicit (sentence1, sentence2, 0/1 label) pairs: they reach us as mined pairs.
    first, second = randn(8, 6).requires_grad_(), randn(8, 6, seed=1).requires_grad_()
    is_similar = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0])
    rows = torch.arange(8)
    pairs = PairIndices(rows[is_similar == 1], rows[is_similar == 1], rows[is_similar == 0], rows[is_similar == 0])
    ours = ContrastiveLoss(margin=0.5, power=2.0)(first, ref_embeddings=second, indices=pairs)
    theirs = st_losses.ContrastiveLoss(nn.Identity(), margin=0.5).compute_loss_from_embeddings(
        [first, second], is_similar
    )
    torch.testing.assert_close(ours, 2 * theirs)
    ours_grads = torch.autograd.grad(ours, [first, second])
    st_grads = torch.autograd.grad(2 * theirs, [first, second])
    for got, want in zip(ours_grads, st_grads, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_triplet_matches_st_triplet(metric: str) -> None:
    anchors, positives, negatives = (randn(6, 8, seed=k).requires_grad_() for k in range(3))
    if metric == "euclidean":  # ST's default: unnormalised euclidean, margin 5
        ours_fn = TripletLoss(margin=5.0, distance=LpDistance(normalize_embeddings=False), reduction="mean")
        st_fn = st_losses.TripletLoss(nn.Identity(), triplet_margin=5.0)
    else:
        ours_fn = TripletLoss(margin=0.3, distance="cosine_similarity", reduction="mean")
        st_fn = st_losses.TripletLoss(
            nn.Identity(), distance_metric=st_losses.TripletDistanceMetric.COSINE, triplet_margin=0.3
        )
    rows = torch.arange(6)
    # Anchors against cat(positives, negatives): triplet k is (k, k, 6 + k).
    triplets = TripletIndices(rows, rows, rows + 6)
    ours = ours_fn(anchors, ref_embeddings=torch.cat([positives, negatives]), indices=triplets)
    theirs = st_fn.compute_loss_from_embeddings([anchors, positives, negatives], labels=None)
    torch.testing.assert_close(ours, theirs)
    inputs = [anchors, positives, negatives]
    for got, want in zip(torch.autograd.grad(ours, inputs), torch.autograd.grad(theirs, inputs), strict=True):
        torch.testing.assert_close(got, want)


# --- pytorch-metric-learning parity --------------------------------------------------------------


@pytest.mark.parametrize("use_ref", [False, True])
def test_info_nce_matches_pml_ntxent_with_one_positive_per_row(use_ref: bool) -> None:
    ref, ref_labels = (randn(6, 5, seed=1), torch.tensor([0, 1, 2, 3, 4, 5])) if use_ref else (None, None)
    assert_same_loss_and_gradient(
        InfoNCELoss(temperature=0.07),
        pml_losses.NTXentLoss(temperature=0.07),
        randn(8, 5),
        TWO_PER_CLASS,
        ref,
        ref_labels,
    )


@pytest.mark.parametrize("case", ["same_set", "ref", "mined"])
def test_contrastive_matches_pml(case: str) -> None:
    ref, ref_labels = (randn(7, 5, seed=1), REF_LABELS) if case == "ref" else (None, None)
    indices = random_subset(all_pairs(LABELS)) if case == "mined" else None
    ours_fn = ContrastiveLoss(margin=1.0, power=1.0, distance="lp", reduction="mean_nonzero")
    x = randn(8, 5)
    assert_same_loss_and_gradient(ours_fn, pml_losses.ContrastiveLoss(), x, LABELS, ref, ref_labels, indices)


@pytest.mark.parametrize("case", ["same_set", "ref", "mined", "swap"])
def test_triplet_matches_pml(case: str) -> None:
    ref, ref_labels = (randn(7, 5, seed=1), REF_LABELS) if case == "ref" else (None, None)
    indices = random_subset(all_triplets(LABELS)) if case == "mined" else None
    swap = case == "swap"  # same set only: PML looks up d(p, n) in the anchor-by-reference matrix
    ours_fn, pml_fn = TripletLoss(margin=0.2, swap=swap), pml_losses.TripletMarginLoss(margin=0.2, swap=swap)
    assert_same_loss_and_gradient(ours_fn, pml_fn, randn(8, 5), LABELS, ref, ref_labels, indices)
