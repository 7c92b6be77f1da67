from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pair_checks import LABELS, REF_LABELS, assert_matches_naive_with_gradients, randn
from pytorch_metric_learning import losses as pml_losses

from textdml.losses.angular import AngularLoss
from textdml.miners.base import PairIndices, all_pairs


def some_positive_pairs(labels: torch.Tensor, seed: int = 0) -> PairIndices:
    """A random half of the positive pairs (angular loss takes its negatives from the labels)."""
    pairs = all_pairs(labels)
    keep = torch.rand(len(pairs.anchor_pos), generator=torch.Generator().manual_seed(seed)) < 0.5
    return PairIndices(pairs.anchor_pos[keep], pairs.positive[keep], pairs.anchor_neg, pairs.negative)


def naive_angular(x, labels, ref=None, ref_labels=None, alpha_degrees=40.0):
    same_set = ref is None
    ref, ref_labels = (x, labels) if same_set else (ref, ref_labels)
    sq_tan = math.tan(math.radians(alpha_degrees)) ** 2
    losses = []
    for a in range(len(x)):
        for p in range(len(ref)):
            if ref_labels[p] != labels[a] or (same_set and p == a):
                continue
            xa, xp = F.normalize(x[a], dim=0), F.normalize(ref[p], dim=0)
            total = torch.ones((), dtype=x.dtype)
            for n in range(len(ref)):
                if ref_labels[n] != labels[a]:
                    xn = F.normalize(ref[n], dim=0)
                    total = total + torch.exp(4 * sq_tan * (xa + xp) @ xn - 2 * (1 + sq_tan) * xa @ xp)
            losses.append(torch.log(total))
    return torch.stack(losses).mean()


def tangential(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The part of a gradient that moves a unit row along the sphere (normalisation removes the rest)."""
    return grad - (grad * x).sum(dim=1, keepdim=True) * x


@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_naive_reference(use_ref: bool) -> None:
    assert_matches_naive_with_gradients(
        AngularLoss(alpha=35),
        lambda x, labels, ref, ref_labels: naive_angular(x, labels, ref, ref_labels, 35),
        use_ref,
    )


@pytest.mark.parametrize("case", ["same_set", "ref", "mined"])
def test_matches_pml(case: str) -> None:
    # PML leaves the negatives unnormalised: compare on unit rows, and compare the gradients'
    # tangential parts (our normalisation removes the radial part that PML keeps for negatives).
    x = F.normalize(randn(8, 5), dim=1)
    ref = F.normalize(randn(7, 5, seed=1), dim=1)
    ours_x, pml_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours_ref, pml_ref = ref.clone().requires_grad_(), ref.clone().requires_grad_()
    ours_fn, pml_fn = AngularLoss(alpha=40), pml_losses.AngularLoss(alpha=40)
    if case == "ref":
        ours = ours_fn(ours_x, LABELS, ref_embeddings=ours_ref, ref_labels=REF_LABELS)
        theirs = pml_fn(pml_x, LABELS, ref_emb=pml_ref, ref_labels=REF_LABELS)
    else:
        mined = some_positive_pairs(LABELS) if case == "mined" else None
        pml_mined = None if mined is None else (mined.anchor_pos, mined.positive, mined.anchor_neg, mined.negative)
        ours, theirs = ours_fn(ours_x, LABELS, indices=mined), pml_fn(pml_x, LABELS, indices_tuple=pml_mined)
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(tangential(ours_x.grad, x), tangential(pml_x.grad, x))
    if case == "ref":
        torch.testing.assert_close(tangential(ours_ref.grad, ref), tangential(pml_ref.grad, ref))
