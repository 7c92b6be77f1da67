from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pair_checks import LABELS, assert_matches_naive_with_gradients, mined_pairs, randn
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses

from textdml.losses.lifted_structure import LiftedStructureLoss


def euclidean(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (F.normalize(u, dim=0) - F.normalize(v, dim=0)).norm()


def naive_lifted(x, labels, ref=None, ref_labels=None, neg_margin=1.0, pos_margin=0.0):
    """Each positive pair (i, j): its distance plus a soft max over the negatives of i (and of j,
    when j is a batch row)."""
    same_set = ref is None
    ref, ref_labels = (x, labels) if same_set else (ref, ref_labels)
    losses = []
    for i in range(len(x)):
        for j in range(len(ref)):
            if ref_labels[j] != labels[i] or (same_set and i == j):
                continue
            terms = [neg_margin - euclidean(x[i], ref[n]) for n in range(len(ref)) if ref_labels[n] != labels[i]]
            if same_set:
                terms += [neg_margin - euclidean(x[j], x[n]) for n in range(len(x)) if labels[n] != labels[j]]
            if terms:
                violation = torch.logsumexp(torch.stack(terms), dim=0) + euclidean(x[i], ref[j]) - pos_margin
                losses.append(torch.relu(violation) ** 2 / 2)
    return torch.stack(losses).mean()


@pytest.mark.parametrize("use_ref", [False, True])
def test_matches_naive_reference(use_ref: bool) -> None:
    assert_matches_naive_with_gradients(
        LiftedStructureLoss(neg_margin=1.2, pos_margin=0.1),
        lambda x, labels, ref, ref_labels: naive_lifted(x, labels, ref, ref_labels, 1.2, 0.1),
        use_ref,
    )


@pytest.mark.parametrize("mined", [False, True])
@pytest.mark.parametrize("similarity", [False, True], ids=["euclidean", "cosine"])
def test_matches_pml(mined: bool, similarity: bool) -> None:
    # PML pairs reference rows with batch rows by index, so only the same-set layout is compared.
    x = randn(8, 5)
    indices = mined_pairs(LABELS) if mined else None
    pml_indices = (
        None if indices is None else (indices.anchor_pos, indices.positive, indices.anchor_neg, indices.negative)
    )
    margins = dict(neg_margin=0.3, pos_margin=0.9) if similarity else dict(neg_margin=1.0, pos_margin=0.1)
    ours_fn = LiftedStructureLoss(**margins, distance="cosine_similarity" if similarity else None)
    pml_fn = pml_losses.LiftedStructureLoss(
        **margins, **({"distance": pml_distances.CosineSimilarity()} if similarity else {})
    )
    ours_x, pml_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, theirs = ours_fn(ours_x, LABELS, indices=indices), pml_fn(pml_x, LABELS, indices_tuple=pml_indices)
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours_x.grad, pml_x.grad)
