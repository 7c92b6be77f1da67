from __future__ import annotations

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
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses

from textdml.losses.generalized_lifted_structure import GeneralizedLiftedStructureLoss

# PML counts rows without a positive (with an empty log-sum-exp of 0): compare where every row has one.
PML_LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])


def euclidean(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (F.normalize(u, dim=0) - F.normalize(v, dim=0)).norm()


def naive_generalized_lifted(x, labels, ref=None, ref_labels=None, neg_margin=1.0, pos_margin=0.0):
    same_set = ref is None
    ref, ref_labels = (x, labels) if same_set else (ref, ref_labels)
    losses = []
    for a in range(len(x)):
        pos = [
            euclidean(x[a], ref[p]) - pos_margin
            for p in range(len(ref))
            if ref_labels[p] == labels[a] and not (same_set and p == a)
        ]
        neg = [neg_margin - euclidean(x[a], ref[n]) for n in range(len(ref)) if ref_labels[n] != labels[a]]
        if pos and neg:
            losses.append(torch.relu(torch.logsumexp(torch.stack(pos), 0) + torch.logsumexp(torch.stack(neg), 0)))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_naive_reference(use_ref: bool) -> None:
    assert_matches_naive_with_gradients(
        GeneralizedLiftedStructureLoss(neg_margin=1.2, pos_margin=0.1),
        lambda x, labels, ref, ref_labels: naive_generalized_lifted(x, labels, ref, ref_labels, 1.2, 0.1),
        use_ref,
    )


@pytest.mark.parametrize("case", ["same_set", "ref", "mined", "cosine"])
def test_matches_pml(case: str) -> None:
    cosine = case == "cosine"
    margins = dict(neg_margin=0.3, pos_margin=0.9) if cosine else dict(neg_margin=1.0, pos_margin=0.1)
    ours_fn = GeneralizedLiftedStructureLoss(**margins, distance="cosine_similarity" if cosine else None)
    pml_fn = pml_losses.GeneralizedLiftedStructureLoss(
        **margins, **({"distance": pml_distances.CosineSimilarity()} if cosine else {})
    )
    if case == "ref":
        assert_same_loss_and_gradient(ours_fn, pml_fn, randn(8, 5), LABELS, randn(7, 5, seed=1), REF_LABELS)
    else:
        indices = mined_pairs(PML_LABELS) if case == "mined" else None
        assert_same_loss_and_gradient(ours_fn, pml_fn, randn(8, 5), PML_LABELS, indices=indices)
