from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pair_checks import clustered_batch
from pytorch_metric_learning import losses as pml_losses

from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.threshold_consistent_margin import ThresholdConsistentMarginLoss
from textdml.miners.base import PairIndices, all_pairs


def naive_tcm(x, labels, ref=None, ref_labels=None, lambda_plus=1.0, lambda_minus=1.0, m_plus=0.9, m_minus=0.5,
              pairs=None):
    """Each pair in turn; ``pairs`` restricts to (positive, negative) lists of (i, j)."""
    same_set = ref is None
    ref, ref_labels = (x, labels) if same_set else (ref, ref_labels)
    if pairs is None:
        every = [(i, j) for i in range(len(x)) for j in range(len(ref)) if not (same_set and i == j)]
        pairs = ([p for p in every if labels[p[0]] == ref_labels[p[1]]],
                 [p for p in every if labels[p[0]] != ref_labels[p[1]]])
    pos = [m_plus - s for s in (F.cosine_similarity(x[i], ref[j], dim=0) for i, j in pairs[0]) if s <= m_plus]
    neg = [s - m_minus for s in (F.cosine_similarity(x[i], ref[j], dim=0) for i, j in pairs[1]) if s >= m_minus]
    pos_term = torch.stack(pos).mean() if pos else 0.0
    neg_term = torch.stack(neg).mean() if neg else 0.0
    return lambda_plus * pos_term + lambda_minus * neg_term


def some_pairs(labels, ref_labels=None) -> PairIndices:
    pairs = all_pairs(labels, ref_labels)
    return PairIndices(pairs.anchor_pos[::2], pairs.positive[::2], pairs.anchor_neg[::3], pairs.negative[::3])


@pytest.mark.parametrize("use_ref", [False, True])
@pytest.mark.parametrize("mined", [False, True])
def test_matches_naive_reference(use_ref, mined):
    torch.manual_seed(0)
    x, labels = torch.randn(10, 6), torch.randint(0, 3, (10,))
    # A larger reference set than the batch: PML 2.9.0 would index embeddings out of range here.
    ref, ref_labels = (torch.randn(13, 6), torch.randint(0, 3, (13,))) if use_ref else (None, None)
    indices = some_pairs(labels, ref_labels) if mined else None
    pairs = None
    if mined:
        pairs = (list(zip(indices.anchor_pos.tolist(), indices.positive.tolist(), strict=True)),
                 list(zip(indices.anchor_neg.tolist(), indices.negative.tolist(), strict=True)))
    loss = ThresholdConsistentMarginLoss(lambda_plus=0.7, lambda_minus=1.3, margin_plus=0.5, margin_minus=0.1)
    ours = loss(x, labels, ref_embeddings=ref, ref_labels=ref_labels, indices=indices)
    expected = naive_tcm(x, labels, ref, ref_labels, 0.7, 1.3, 0.5, 0.1, pairs)
    torch.testing.assert_close(ours, expected)


def test_reference_rows_are_read_from_the_reference_set():
    # Reference rows equal to the anchors' own classes' centres: every positive pair is perfect.
    x, labels = clustered_batch(0.0)
    ref = torch.eye(3, 6)
    value = ThresholdConsistentMarginLoss(margin_minus=0.5)(x, labels, ref_embeddings=ref, ref_labels=torch.arange(3))
    assert value.item() == 0.0


def test_no_pair_warns_and_is_zero():
    x = torch.randn(1, 4, requires_grad=True)
    with pytest.warns(DegenerateBatchWarning):
        value = ThresholdConsistentMarginLoss()(x, torch.tensor([0]))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(x.grad).all()


def test_identical_embeddings_are_finite():
    x = torch.ones(6, 4, requires_grad=True)
    value = ThresholdConsistentMarginLoss()(x, torch.tensor([0, 0, 1, 1, 2, 2]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()


def test_other_distance_is_an_error():
    with pytest.raises(ValueError, match="cosine_similarity"):
        ThresholdConsistentMarginLoss(distance="lp")


@pytest.mark.parametrize("mined", [False, True])
def test_parity_with_pml_without_ref(mined):
    torch.manual_seed(1)
    x = torch.randn(12, 8, requires_grad=True)
    labels = torch.randint(0, 4, (12,))
    indices = some_pairs(labels) if mined else None
    loss = ThresholdConsistentMarginLoss(margin_plus=0.3, margin_minus=0.0)
    value = loss(x, labels, indices=indices)
    (grad,) = torch.autograd.grad(value, x)
    pml_indices = None if indices is None else (indices.anchor_pos, indices.positive, indices.anchor_neg, indices.negative)
    expected = pml_losses.ThresholdConsistentMarginLoss(margin_plus=0.3, margin_minus=0.0)(x, labels, pml_indices)
    (expected_grad,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grad, expected_grad)
