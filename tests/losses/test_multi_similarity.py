from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pair_checks import assert_finite_with_gradient, assert_matches_naive, assert_pml_parity_on_labelled_rows
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses

from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.multi_similarity import MultiSimilarityLoss


def naive_multi_similarity(x, labels, ref=None, ref_labels=None, alpha=2.0, beta=50.0, base=0.5):
    """Cosine similarity MS loss, one anchor and one pair at a time."""
    same_set = ref is None
    ref, ref_labels = (x, labels) if same_set else (ref, ref_labels)
    losses = []
    for i in range(len(x)):
        pos_sum, neg_sum = 0.0, 0.0
        for j in range(len(ref)):
            if same_set and i == j:
                continue
            s = F.cosine_similarity(x[i], ref[j], dim=0)
            if labels[i] == ref_labels[j]:
                pos_sum = pos_sum + torch.exp(-alpha * (s - base))
            else:
                neg_sum = neg_sum + torch.exp(beta * (s - base))
        losses.append(torch.log(1 + pos_sum) / alpha + torch.log(1 + neg_sum) / beta)
    return torch.stack(losses).mean()


@pytest.mark.parametrize("use_ref", [False, True])
@pytest.mark.parametrize("alpha,beta,base", [(2.0, 50.0, 0.5), (1.0, 10.0, 0.2)])
def test_matches_naive_reference(use_ref, alpha, beta, base):
    assert_matches_naive(MultiSimilarityLoss(alpha=alpha, beta=beta, base=base),
                         lambda *rows: naive_multi_similarity(*rows, alpha, beta, base), use_ref)


def test_no_pair_warns_and_is_zero():
    x = torch.randn(1, 4, requires_grad=True)
    with pytest.warns(DegenerateBatchWarning):
        value = MultiSimilarityLoss()(x, torch.tensor([0]))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("labels", [[0, 0, 0, 0], [0, 1, 2, 3]], ids=["one_class", "no_positive"])
def test_one_sided_batches_still_train(labels):
    # One class: only the positive term; no positive: only the negative term (as PML).
    assert assert_finite_with_gradient(MultiSimilarityLoss(), torch.randn(4, 5), torch.tensor(labels)) > 0


@pytest.mark.parametrize("use_ref", [False, True])
@pytest.mark.parametrize("distance", ["cosine", "lp"])
@pytest.mark.parametrize("mined", [False, True])
def test_parity_with_pml(use_ref, distance, mined):
    if distance == "cosine":
        ours, theirs = MultiSimilarityLoss(), pml_losses.MultiSimilarityLoss()
    else:
        ours = MultiSimilarityLoss(alpha=2, beta=10, base=1.0, distance="lp")
        theirs = pml_losses.MultiSimilarityLoss(alpha=2, beta=10, base=1.0, distance=pml_distances.LpDistance())
    assert_pml_parity_on_labelled_rows(ours, theirs, use_ref, mined)
