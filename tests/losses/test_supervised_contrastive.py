from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pair_checks import assert_finite_with_gradient, assert_matches_naive, assert_pml_parity_on_labelled_rows
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses

from textdml.losses.ntxent import NTXentLoss
from textdml.losses.supervised_contrastive import SupervisedContrastiveLoss
from textdml.miners.base import PairIndices


def naive_supcon(x, labels, ref=None, ref_labels=None, temperature=0.1):
    """Cosine SupCon L_out: per anchor, the mean -log softmax of its positives over every other row."""
    same_set = ref is None
    ref, ref_labels = (x, labels) if same_set else (ref, ref_labels)
    anchor_losses = []
    for i in range(len(x)):
        others = [j for j in range(len(ref)) if not (same_set and i == j)]
        positives = [j for j in others if labels[i] == ref_labels[j]]
        if not positives:
            continue
        logits = {j: F.cosine_similarity(x[i], ref[j], dim=0) / temperature for j in others}
        log_denominator = torch.logsumexp(torch.stack([logits[j] for j in others]), dim=0)
        anchor_losses.append(-torch.stack([logits[p] - log_denominator for p in positives]).mean())
    return torch.stack(anchor_losses).mean()


@pytest.mark.parametrize("use_ref", [False, True])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_matches_naive_reference(use_ref, temperature):
    assert_matches_naive(SupervisedContrastiveLoss(temperature), lambda *rows: naive_supcon(*rows, temperature),
                         use_ref)


def test_one_positive_per_anchor_equals_ntxent():
    torch.manual_seed(0)
    views, labels = torch.randn(8, 6), torch.arange(4).repeat(2)
    torch.testing.assert_close(SupervisedContrastiveLoss(0.1)(views, labels), NTXentLoss(0.1)(views, labels))


def test_mined_rows_without_pairs_are_finite():
    # Rows 1 and 3 appear in no mined pair: their denominators are empty and must not leak NaN.
    indices = PairIndices(torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), torch.tensor([2]))
    loss = SupervisedContrastiveLoss()
    assert_finite_with_gradient(loss, torch.randn(4, 5), torch.tensor([0, 0, 1, 1]), indices=indices)


@pytest.mark.parametrize("use_ref", [False, True])
@pytest.mark.parametrize("distance", ["cosine", "lp"])
@pytest.mark.parametrize("mined", [False, True])
def test_parity_with_pml(use_ref, distance, mined):
    if distance == "cosine":
        ours, theirs = SupervisedContrastiveLoss(0.1), pml_losses.SupConLoss(0.1)
    else:
        ours = SupervisedContrastiveLoss(0.5, distance="lp")
        theirs = pml_losses.SupConLoss(0.5, distance=pml_distances.LpDistance())
    assert_pml_parity_on_labelled_rows(ours, theirs, use_ref, mined)
