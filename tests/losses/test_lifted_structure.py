from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses

from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.lifted_structure import LiftedStructureLoss
from textdml.miners.base import PairIndices, all_pairs
from textdml.registry import LOSSES

LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3])
REF_LABELS = torch.tensor([0, 1, 1, 2, 3, 3, 4])


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def mined_pairs(labels: torch.Tensor, seed: int = 0) -> PairIndices:
    """A random subset of all pairs that keeps one positive and one negative for every anchor."""
    pairs = all_pairs(labels)
    generator = torch.Generator().manual_seed(seed)

    def keep(anchor: torch.Tensor) -> torch.Tensor:
        first_of_anchor = torch.ones(len(anchor), dtype=torch.bool)
        first_of_anchor[1:] = anchor[1:] != anchor[:-1]
        return (torch.rand(len(anchor), generator=generator) < 0.5) | first_of_anchor

    pos, neg = keep(pairs.anchor_pos), keep(pairs.anchor_neg)
    return PairIndices(pairs.anchor_pos[pos], pairs.positive[pos], pairs.anchor_neg[neg], pairs.negative[neg])


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
    x = randn(8, 5).requires_grad_()
    ref = randn(7, 5, seed=1).requires_grad_() if use_ref else None
    kwargs = dict(ref_embeddings=ref, ref_labels=REF_LABELS) if use_ref else {}
    ours = LiftedStructureLoss(neg_margin=1.2, pos_margin=0.1)(x, LABELS, **kwargs)
    expected = naive_lifted(x, LABELS, ref, REF_LABELS if use_ref else None, 1.2, 0.1)
    torch.testing.assert_close(ours, expected)
    inputs = [x] if ref is None else [x, ref]
    for got, want in zip(torch.autograd.grad(ours, inputs), torch.autograd.grad(expected, inputs), strict=True):
        torch.testing.assert_close(got, want)


def test_direction_closer_positives_lower_the_loss() -> None:
    centres, noise = randn(4, 16), randn(8, 16, seed=1)
    loss_fn = LiftedStructureLoss()
    assert loss_fn(centres[LABELS] + 0.3 * noise, LABELS) < loss_fn(centres[LABELS] + 1.0 * noise, LABELS)


def test_bfloat16_close_to_float32() -> None:
    x = randn(8, 16).float()
    full, half = LiftedStructureLoss()(x, LABELS), LiftedStructureLoss()(x.bfloat16(), LABELS)
    assert half.dtype == torch.float32 and torch.isfinite(half)
    torch.testing.assert_close(half, full, rtol=5e-2, atol=5e-2)


def test_gradcheck() -> None:
    x = randn(6, 4).requires_grad_()
    assert torch.autograd.gradcheck(lambda e: LiftedStructureLoss()(e, torch.tensor([0, 0, 1, 1, 2, 2])), (x,))


@pytest.mark.parametrize(
    "labels", [torch.zeros(6, dtype=torch.long), torch.arange(6)], ids=["one_class", "no_positive"]
)
def test_degenerate_batch_warns_and_is_zero(labels: torch.Tensor) -> None:
    x = randn(6, 4).requires_grad_()
    with pytest.warns(DegenerateBatchWarning):
        loss = LiftedStructureLoss()(x, labels)
    assert loss.item() == 0
    loss.backward()
    assert torch.all(x.grad == 0)


def test_identical_embeddings_give_finite_loss_and_gradient() -> None:
    x = torch.ones(6, 4, requires_grad=True)
    loss = LiftedStructureLoss()(x, torch.tensor([0, 0, 1, 1, 2, 2]))
    loss.backward()
    assert torch.isfinite(loss) and loss > 0 and torch.isfinite(x.grad).all()


def test_registered() -> None:
    assert LOSSES.get("lifted_structure") is LiftedStructureLoss


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
