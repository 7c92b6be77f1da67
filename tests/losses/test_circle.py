from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pair_checks import LABELS, REF_LABELS, assert_matches_naive_with_gradients, assert_same_loss_and_gradient, randn
from pytorch_metric_learning import losses as pml_losses

from textdml.losses.circle import CircleLoss
from textdml.miners.base import PairIndices, all_pairs


def mined_pairs(labels: torch.Tensor, seed: int = 0) -> PairIndices:
    pairs = all_pairs(labels)
    generator = torch.Generator().manual_seed(seed)
    pos = torch.rand(len(pairs.anchor_pos), generator=generator) < 0.6
    neg = torch.rand(len(pairs.anchor_neg), generator=generator) < 0.4
    return PairIndices(pairs.anchor_pos[pos], pairs.positive[pos], pairs.anchor_neg[neg], pairs.negative[neg])


def naive_circle(x, labels, ref=None, ref_labels=None, m=0.4, gamma=80.0, weights_from=None):
    """Per anchor: softplus(logsumexp over negatives + logsumexp over positives). The weights are
    constants: taken from ``weights_from`` when given (to differentiate numerically), else detached."""
    same_set = ref is None
    ref, ref_labels = (x, labels) if same_set else (ref, ref_labels)
    weights_from = (x.detach(), ref.detach()) if weights_from is None else weights_from
    cos = lambda u, v: F.cosine_similarity(u, v, dim=0)  # noqa: E731
    losses = []
    for a in range(len(x)):
        pos, neg = [], []
        for j in range(len(ref)):
            if same_set and j == a:
                continue
            s, s_const = cos(x[a], ref[j]), cos(weights_from[0][a], weights_from[1][j])
            if ref_labels[j] == labels[a]:
                pos.append(-gamma * torch.relu(1 + m - s_const) * (s - (1 - m)))
            else:
                neg.append(gamma * torch.relu(s_const + m) * (s - m))
        if pos and neg:
            losses.append(F.softplus(torch.logsumexp(torch.stack(pos), 0) + torch.logsumexp(torch.stack(neg), 0)))
    losses = torch.stack(losses)
    return losses[losses > 0].mean()


@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_naive_reference(use_ref: bool) -> None:
    assert_matches_naive_with_gradients(
        CircleLoss(m=0.25, gamma=16.0),
        lambda x, labels, ref, ref_labels: naive_circle(x, labels, ref, ref_labels, 0.25, 16.0),
        use_ref,
    )


def test_gradient_matches_finite_differences_with_weights_held_constant() -> None:
    # The weights are stop-gradient, so plain gradcheck does not apply: differentiate numerically
    # the same loss with the weights frozen at the evaluation point.
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    x = randn(6, 4).requires_grad_()
    CircleLoss(gamma=4.0)(x, labels).backward()
    frozen = lambda e: naive_circle(e, labels, gamma=4.0, weights_from=(x.detach(), x.detach()))  # noqa: E731
    numerical = torch.zeros(x.numel(), dtype=x.dtype)
    eps = 1e-6
    for index in range(x.numel()):
        step = torch.zeros(x.numel(), dtype=x.dtype)
        step[index] = eps
        step = step.view_as(x)
        numerical[index] = (frozen(x.detach() + step) - frozen(x.detach() - step)) / (2 * eps)
    numerical = numerical.view_as(x)
    torch.testing.assert_close(x.grad, numerical, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("case", ["same_set", "ref", "mined"])
def test_matches_pml(case: str) -> None:
    x = randn(8, 5)
    kwargs = dict(ref=randn(7, 5, seed=1), ref_labels=REF_LABELS) if case == "ref" else {}
    indices = mined_pairs(LABELS) if case == "mined" else None
    assert_same_loss_and_gradient(CircleLoss(m=0.4, gamma=80.0), pml_losses.CircleLoss(m=0.4, gamma=80.0), x, LABELS,
                                  indices=indices, **kwargs)