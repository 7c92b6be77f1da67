from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pair_checks import (
    LABELS,
    REF_LABELS,
    assert_matches_naive_with_gradients,
    assert_same_loss_and_gradient,
    randn,
    random_subset,
)
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses

from textdml.losses.nca import NCALoss
from textdml.miners.base import TripletIndices, all_pairs, all_triplets


def naive_nca(x, labels, ref=None, ref_labels=None, scale=1.0, weights=None):
    same_set = ref is None
    ref, ref_labels = (x, labels) if same_set else (ref, ref_labels)
    sq_dist = lambda u, v: ((F.normalize(u, dim=0) - F.normalize(v, dim=0)) ** 2).sum()  # noqa: E731
    losses = []
    for i in range(len(x)):
        candidates = [j for j in range(len(ref)) if not (same_set and j == i)]
        positives = [j for j in candidates if ref_labels[j] == labels[i]]
        if not positives:
            continue
        numerator = sum(torch.exp(-scale * sq_dist(x[i], ref[j])) for j in positives)
        denominator = sum(torch.exp(-scale * sq_dist(x[i], ref[j])) for j in candidates)
        weight = 1.0 if weights is None else weights[i]
        losses.append(-torch.log(numerator / denominator) * weight)
    return torch.stack(losses).mean()


@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_naive_reference(use_ref: bool) -> None:
    assert_matches_naive_with_gradients(
        NCALoss(softmax_scale=3.0),
        lambda x, labels, ref, ref_labels: naive_nca(x, labels, ref, ref_labels, 3.0),
        use_ref,
    )


def test_mined_tuples_weight_the_anchors() -> None:
    x = randn(8, 5)
    triplets = TripletIndices(torch.tensor([0, 0, 3]), torch.tensor([1, 2, 4]), torch.tensor([3, 5, 0]))
    # Row 0 appears 3 times, rows 3 twice, ... (anchors, positives and negatives of the batch).
    counts = torch.bincount(torch.cat([triplets.anchor, triplets.positive, triplets.negative]), minlength=8)
    weights = counts.double() / counts.max()
    ours = NCALoss()(x, LABELS, indices=triplets)
    torch.testing.assert_close(ours, naive_nca(x, LABELS, weights=weights))


@pytest.mark.parametrize("case", ["same_set", "ref", "mined_pairs", "mined_triplets", "mined_ref", "cosine"])
def test_matches_pml(case: str) -> None:
    x = randn(8, 5)
    ref = randn(7, 5, seed=1) if case in ("ref", "mined_ref") else None
    ref_labels = REF_LABELS if ref is not None else None
    indices = None
    if case in ("mined_pairs", "mined_ref"):
        indices = random_subset(all_pairs(LABELS, ref_labels), neg_fraction=0.3)
    elif case == "mined_triplets":
        indices = random_subset(all_triplets(LABELS))
    cosine = case == "cosine"
    ours_fn = NCALoss(softmax_scale=2.0, distance="cosine_similarity" if cosine else None)
    pml_fn = pml_losses.NCALoss(softmax_scale=2.0, **({"distance": pml_distances.CosineSimilarity()} if cosine else {}))
    assert_same_loss_and_gradient(ours_fn, pml_fn, x, LABELS, ref, ref_labels, indices)


def test_rows_whose_positive_probability_underflows_are_kept_exactly():
    from textdml.losses.info_nce import multi_positive_cross_entropy
    from textdml.losses.nca import positive_log_likelihood

    logits = torch.tensor([[0.0, -200.0, 10.0], [1.0, 2.0, 3.0]], dtype=torch.float32)
    positive = torch.tensor([[False, True, False], [True, False, False]])
    losses, has_positive = positive_log_likelihood(logits, positive)
    expected, _ = multi_positive_cross_entropy(logits, positive)
    assert has_positive.all() and torch.isfinite(losses).all()
    torch.testing.assert_close(losses, expected)  # row 0: exp(-210) underflows in float32
    x = logits.clone().requires_grad_()
    positive_log_likelihood(x, positive)[0].sum().backward()
    assert torch.isfinite(x.grad).all()
