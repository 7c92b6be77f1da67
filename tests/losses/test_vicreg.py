from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses

from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.vicreg import VICRegLoss


def naive_vicreg(z, z2, lam=25.0, mu=25.0, nu=1.0, eps=1e-4):
    """Every term with explicit loops over rows and dimensions."""
    n, dim = z.shape

    def column(m, d):
        return [float(m[i, d]) for i in range(n)]

    def variance(m):
        total = 0.0
        for d in range(dim):
            values = column(m, d)
            mean = sum(values) / n
            var = sum((v - mean) ** 2 for v in values) / (n - 1)
            total += max(0.0, 1 - math.sqrt(var + eps))
        return total / dim

    def covariance(m):
        means = [sum(column(m, d)) / n for d in range(dim)]
        total = 0.0
        for d in range(dim):
            for e in range(dim):
                if d != e:
                    cov = sum((m[i, d] - means[d]) * (m[i, e] - means[e]) for i in range(n)) / (n - 1)
                    total += float(cov) ** 2
        return total / dim

    invariance = sum(float((z[i, d] - z2[i, d]) ** 2) for i in range(n) for d in range(dim)) / (n * dim)
    return lam * invariance + mu * (variance(z) + variance(z2)) / 2 + nu * (covariance(z) + covariance(z2))


@pytest.mark.parametrize("params", [{}, dict(invariance_lambda=1.0, variance_mu=3.0, covariance_v=0.5, eps=1e-3)])
def test_matches_naive_reference(params):
    torch.manual_seed(0)
    z, z2 = 0.5 * torch.randn(9, 5, dtype=torch.float64), 0.5 * torch.randn(9, 5, dtype=torch.float64)
    ours = VICRegLoss(**params)(z, ref_embeddings=z2)
    names = {"invariance_lambda": "lam", "variance_mu": "mu", "covariance_v": "nu", "eps": "eps"}
    expected = naive_vicreg(z, z2, **{names[k]: v for k, v in params.items()})
    assert math.isclose(ours.item(), expected, rel_tol=1e-9)


def test_pair_labels_are_accepted_and_class_labels_refused():
    z, z2 = torch.randn(6, 4), torch.randn(6, 4)
    by_position = VICRegLoss()(z, ref_embeddings=z2)
    torch.testing.assert_close(VICRegLoss()(z, torch.arange(6), ref_embeddings=z2, ref_labels=torch.arange(6)),
                               by_position)
    with pytest.raises(ValueError, match="no class labels"):
        VICRegLoss()(z, torch.tensor([0, 0, 1, 1, 2, 2]), ref_embeddings=z2, ref_labels=torch.tensor([0, 1] * 3))
    with pytest.raises(ValueError, match="two views"):
        VICRegLoss()(z, torch.arange(6))
    with pytest.raises(ValueError, match="hard-negative"):
        VICRegLoss()(z, ref_embeddings=torch.randn(8, 4))


def test_views_that_agree_lower_the_loss():
    torch.manual_seed(0)
    z = torch.randn(32, 8)
    values = [VICRegLoss()(z, ref_embeddings=z + noise * torch.randn(32, 8)).item() for noise in (1.0, 0.5, 0.1)]
    assert values[0] > values[1] > values[2]


def test_collapse_is_penalised():
    torch.manual_seed(0)
    collapsed = torch.ones(16, 4) + 1e-3 * torch.randn(16, 4)
    spread = torch.randn(16, 4)
    assert VICRegLoss()(collapsed, ref_embeddings=collapsed) > VICRegLoss()(spread, ref_embeddings=spread)


def test_one_row_warns_and_is_zero():
    z = torch.randn(1, 4, requires_grad=True)
    with pytest.warns(DegenerateBatchWarning):
        value = VICRegLoss()(z, ref_embeddings=torch.randn(1, 4))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(z.grad).all()


def test_identical_rows_are_finite():
    z = torch.ones(6, 4, requires_grad=True)
    value = VICRegLoss()(z, ref_embeddings=torch.ones(6, 4))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(z.grad).all()


def test_parity_with_pml():
    torch.manual_seed(1)
    z, z2 = torch.randn(16, 8, requires_grad=True), torch.randn(16, 8, requires_grad=True)
    value = VICRegLoss()(z, ref_embeddings=z2)
    grads = torch.autograd.grad(value, (z, z2))
    expected = pml_losses.VICRegLoss()(z, ref_emb=z2)
    expected_grads = torch.autograd.grad(expected, (z, z2))
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grads, expected_grads)
