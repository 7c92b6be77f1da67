from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pair_checks import (
    LABELS,
    REF_LABELS,
    assert_matches_naive_with_gradients,
    assert_same_loss_and_gradient,
    mined_pairs,
    randn,
)
from pytorch_metric_learning import losses as pml_losses

from textdml.losses.tuplet_margin import TupletMarginLoss


def naive_tuplet_margin(x, labels, ref=None, ref_labels=None, margin_degrees=5.73, scale=64.0):
    same_set = ref is None
    ref, ref_labels = (x, labels) if same_set else (ref, ref_labels)
    cos = lambda u, v: F.cosine_similarity(u, v, dim=0)  # noqa: E731
    losses = []
    for a in range(len(x)):
        for p in range(len(ref)):
            if ref_labels[p] != labels[a] or (same_set and p == a):
                continue
            shifted = torch.cos(torch.acos(cos(x[a], ref[p])) - math.radians(margin_degrees))
            total = torch.ones((), dtype=x.dtype)
            for n in range(len(ref)):
                if ref_labels[n] != labels[a]:
                    total = total + torch.exp(scale * (cos(x[a], ref[n]) - shifted))
            losses.append(torch.log(total))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_naive_reference(use_ref: bool) -> None:
    assert_matches_naive_with_gradients(
        TupletMarginLoss(margin=10.0, scale=8.0),
        lambda x, labels, ref, ref_labels: naive_tuplet_margin(x, labels, ref, ref_labels, 10.0, 8.0),
        use_ref,
    )


@pytest.mark.parametrize("case", ["same_set", "ref", "mined"])
def test_matches_pml(case: str) -> None:
    x = randn(8, 5)
    kwargs = dict(ref=randn(7, 5, seed=1), ref_labels=REF_LABELS) if case == "ref" else {}
    indices = mined_pairs(LABELS) if case == "mined" else None
    assert_same_loss_and_gradient(TupletMarginLoss(margin=5.73, scale=16.0),
                                  pml_losses.TupletMarginLoss(margin=5.73, scale=16.0), x, LABELS, indices=indices,
                                  **kwargs)
