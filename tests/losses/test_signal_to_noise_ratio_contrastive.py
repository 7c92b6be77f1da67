from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pair_checks import assert_matches_naive, labelled_rows
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses

from textdml.distances import SNRDistance
from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.signal_to_noise_ratio_contrastive import SignalToNoiseRatioContrastiveLoss
from textdml.miners.base import PairIndices, all_pairs
from textdml.registry import DISTANCES, LOSSES


def snr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x, y = F.normalize(x, dim=0), F.normalize(y, dim=0)
    return torch.var(y - x) / torch.var(x)


def naive_snr_contrastive(x, labels, ref=None, ref_labels=None, margin=1.0, pos_margin=0.0):
    """PML's reduction written out: mean of the non-zero positive terms plus that of the negative ones."""
    same_set = ref is None
    ref, ref_labels = (x, labels) if same_set else (ref, ref_labels)
    pos, neg = [], []
    for i in range(len(x)):
        for j in range(len(ref)):
            if same_set and i == j:
                continue
            d = snr(x[i], ref[j])
            if labels[i] == ref_labels[j]:
                pos.append(torch.relu(d - pos_margin))
            else:
                neg.append(torch.relu(margin - d))

    def mean_nonzero(values):
        values = torch.stack(values)
        return values.sum() / max(int((values > 0).sum()), 1)

    return mean_nonzero(pos) + mean_nonzero(neg)


def test_snr_distance_matches_a_loop_and_pml():
    torch.manual_seed(0)
    query, ref = torch.randn(5, 7, dtype=torch.float64), torch.randn(6, 7, dtype=torch.float64)
    ours = SNRDistance()(query, ref)
    expected = torch.stack([torch.stack([snr(q, r) for r in ref]) for q in query])
    torch.testing.assert_close(ours, expected)
    torch.testing.assert_close(ours, pml_distances.SNRDistance()(query, ref))
    torch.testing.assert_close(SNRDistance().pairwise(query, ref[:5]), ours.diagonal())
    assert "snr" in DISTANCES and not SNRDistance.higher_is_closer


def test_snr_distance_gradcheck():
    torch.manual_seed(0)
    query = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    ref = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q, r: SNRDistance()(q, r), (query, ref))


@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_naive_reference(use_ref):
    assert_matches_naive(SignalToNoiseRatioContrastiveLoss(margin=1.2, pos_margin=0.1),
                         lambda *rows: naive_snr_contrastive(*rows, 1.2, 0.1), use_ref)


def test_no_pair_warns_and_is_zero():
    x = torch.randn(1, 4, requires_grad=True)
    with pytest.warns(DegenerateBatchWarning):
        value = SignalToNoiseRatioContrastiveLoss()(x, torch.tensor([0]))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("spread", [0.01, 0.0], ids=["equal_rows", "constant_rows"])
def test_identical_embeddings_are_finite(spread):
    # Constant rows have no variance (no signal): distances stay finite instead of 0 / 0.
    x = torch.ones(6, 4) + spread * torch.arange(4.0)
    x.requires_grad_()
    value = SignalToNoiseRatioContrastiveLoss()(x, torch.tensor([0, 0, 1, 1, 2, 2]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()


def test_other_distance_is_an_error():
    with pytest.raises(ValueError, match="distance must be 'snr'"):
        SignalToNoiseRatioContrastiveLoss(distance="lp")
    assert LOSSES.get("signal_to_noise_ratio_contrastive") is SignalToNoiseRatioContrastiveLoss


@pytest.mark.parametrize("use_ref", [False, True])
@pytest.mark.parametrize("mined", [False, True])
def test_parity_with_pml(use_ref, mined):
    x, labels, ref, ref_labels = labelled_rows(use_ref, n=12, ref_n=9, dim=8, classes=4, seed=1)
    x.requires_grad_()
    indices = None
    if mined:
        pairs = all_pairs(labels, ref_labels)
        indices = PairIndices(pairs.anchor_pos[::2], pairs.positive[::2], pairs.anchor_neg[::3], pairs.negative[::3])
    value = SignalToNoiseRatioContrastiveLoss()(x, labels, ref_embeddings=ref, ref_labels=ref_labels, indices=indices)
    (grad,) = torch.autograd.grad(value, x)
    pml_indices = None if indices is None else (indices.anchor_pos, indices.positive, indices.anchor_neg, indices.negative)
    expected = pml_losses.SignalToNoiseRatioContrastiveLoss()(x, labels, pml_indices, ref, ref_labels)
    (expected_grad,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grad, expected_grad)


def test_snr_distance_works_in_other_losses_as_in_pml():
    from textdml.losses import TripletLoss

    torch.manual_seed(2)
    x = torch.randn(12, 8, requires_grad=True)
    labels = torch.arange(12) % 3
    value = TripletLoss(margin=0.2, distance="snr")(x, labels)
    (grad,) = torch.autograd.grad(value, x)
    expected = pml_losses.TripletMarginLoss(margin=0.2, distance=pml_distances.SNRDistance())(x, labels)
    (expected_grad,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grad, expected_grad)
