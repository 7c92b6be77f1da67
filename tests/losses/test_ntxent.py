from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pair_checks import assert_finite_with_gradient, assert_matches_naive, assert_pml_parity_on_labelled_rows
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses

from textdml.losses.info_nce import InfoNCELoss
from textdml.losses.ntxent import NTXentLoss
from textdml.miners.base import PairIndices


def naive_ntxent(x, labels, ref=None, ref_labels=None, temperature=0.07):
    """Cosine NT-Xent: one softmax term per positive pair, the other positives left out."""
    same_set = ref is None
    ref, ref_labels = (x, labels) if same_set else (ref, ref_labels)
    terms = []
    for i in range(len(x)):
        for p in range(len(ref)):
            if labels[i] != ref_labels[p] or (same_set and i == p):
                continue
            pos = torch.exp(F.cosine_similarity(x[i], ref[p], dim=0) / temperature)
            denominator = pos
            for n in range(len(ref)):
                if labels[i] != ref_labels[n]:
                    denominator = denominator + torch.exp(F.cosine_similarity(x[i], ref[n], dim=0) / temperature)
            terms.append(-torch.log(pos / denominator))
    return torch.stack(terms).mean()


@pytest.mark.parametrize("use_ref", [False, True])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_matches_naive_reference(use_ref, temperature):
    assert_matches_naive(NTXentLoss(temperature), lambda *rows: naive_ntxent(*rows, temperature), use_ref)


def test_two_views_equal_info_nce():
    torch.manual_seed(0)
    views, labels = torch.randn(8, 6), torch.arange(4).repeat(2)
    torch.testing.assert_close(NTXentLoss(0.1)(views, labels), InfoNCELoss(0.1)(views, labels))


def test_more_views_differ_from_info_nce():
    # InfoNCE sums all positives in one numerator; NT-Xent gives each its own term.
    torch.manual_seed(0)
    views, labels = torch.randn(12, 6), torch.arange(4).repeat(3)
    assert not torch.allclose(NTXentLoss(0.1)(views, labels), InfoNCELoss(0.1)(views, labels))


def test_mined_anchor_without_negative_is_finite():
    # Anchor 0 keeps its positive but loses every negative: its term is -log(1) = 0, no NaN.
    indices = PairIndices(torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([2]), torch.tensor([0]))
    assert_finite_with_gradient(NTXentLoss(), torch.randn(4, 5), torch.tensor([0, 0, 1, 1]), indices=indices)


@pytest.mark.parametrize("use_ref", [False, True])
@pytest.mark.parametrize("distance", ["cosine", "lp"])
@pytest.mark.parametrize("mined", [False, True])
def test_parity_with_pml(use_ref, distance, mined):
    if distance == "cosine":
        ours, theirs = NTXentLoss(0.1), pml_losses.NTXentLoss(0.1)
    else:
        ours, theirs = NTXentLoss(0.5, distance="lp"), pml_losses.NTXentLoss(0.5, distance=pml_distances.LpDistance())
    assert_pml_parity_on_labelled_rows(ours, theirs, use_ref, mined)
