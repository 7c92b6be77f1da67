"""Batches and mined tuples shared by the tests of the pair and tuple losses."""

from __future__ import annotations

import torch

from textdml.miners.base import PairIndices, TripletIndices, all_pairs

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


def some_pairs(labels, ref_labels=None) -> PairIndices:
    pairs = all_pairs(labels, ref_labels)
    return PairIndices(pairs.anchor_pos[::2], pairs.positive[::2], pairs.anchor_neg[::3], pairs.negative[::3])


def clustered_batch(noise: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    return torch.eye(3, 6)[labels] + noise * torch.randn(9, 6, generator=gen), labels


def as_pml(indices: PairIndices | TripletIndices | None) -> tuple[torch.Tensor, ...] | None:
    """Our mined tuples as PML's ``indices_tuple``."""
    if indices is None:
        return None
    if isinstance(indices, TripletIndices):
        return indices.anchor, indices.positive, indices.negative
    return indices.anchor_pos, indices.positive, indices.anchor_neg, indices.negative


def assert_same_loss_and_gradient(ours_fn, pml_fn, x, labels, ref=None, ref_labels=None, indices=None) -> None:
    """Our loss and PML's on copies of the same rows (a ref set, mined tuples) agree, and so do
    their gradients on the rows and on the ref rows."""
    ours_x, pml_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours_ref, pml_ref = (None, None) if ref is None else (ref.clone().requires_grad_(), ref.clone().requires_grad_())
    ours = ours_fn(ours_x, labels, ref_embeddings=ours_ref, ref_labels=ref_labels, indices=indices)
    theirs = pml_fn(pml_x, labels, indices_tuple=as_pml(indices), ref_emb=pml_ref, ref_labels=ref_labels)
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours_x.grad, pml_x.grad)
    if ref is not None:
        torch.testing.assert_close(ours_ref.grad, pml_ref.grad)
