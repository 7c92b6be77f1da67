"""Batches, mined tuples and peer-parity checks shared by the tests of the pair and tuple losses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from tests.miners.miner_checks import random_batch
from textdml.losses.base import DegenerateBatchWarning
from textdml.miners.base import PairIndices, TripletIndices, all_pairs

LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3])
REF_LABELS = torch.tensor([0, 1, 1, 2, 3, 3, 4])


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def labelled_rows(use_ref: bool, n: int = 10, ref_n: int = 7, dim: int = 6, classes: int = 3, seed: int = 0,
                  dtype: torch.dtype = torch.float32):
    """``(x, labels, ref, ref_labels)``: random labelled rows, and a labelled ref set or ``(None, None)``.

    Drawn from the global generator after ``torch.manual_seed(seed)``, as PML's tests do.
    """
    torch.manual_seed(seed)
    x, labels = torch.randn(n, dim, dtype=dtype), torch.randint(0, classes, (n,))
    if not use_ref:
        return x, labels, None, None
    return x, labels, torch.randn(ref_n, dim, dtype=dtype), torch.randint(0, classes, (ref_n,))


def assert_matches_naive(loss_fn: Callable[..., torch.Tensor], naive_fn: Callable[..., Any], use_ref: bool,
                         dtype: torch.dtype = torch.float32, **tolerance: float) -> None:
    """``loss_fn`` equals ``naive_fn(x, labels, ref, ref_labels)`` on :func:`labelled_rows` (with a ref set or not)."""
    x, labels, ref, ref_labels = labelled_rows(use_ref, dtype=dtype)
    ours = loss_fn(x, labels, ref_embeddings=ref, ref_labels=ref_labels)
    expected = torch.as_tensor(naive_fn(x, labels, ref, ref_labels), dtype=ours.dtype)
    torch.testing.assert_close(ours, expected, **tolerance)


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


def assert_same_value_and_gradients(ours_fn: Callable[..., torch.Tensor], theirs_fn: Callable[..., torch.Tensor],
                                    *rows: torch.Tensor) -> None:
    """Our loss and a peer's on copies of the same rows agree, and so do their gradients on every row.

    A peer that backpropagates inside the call (sentence-transformers' mini-batched forms) returns
    a value without a graph; its gradients are compared all the same.
    """
    ours_rows, their_rows = [x.clone().requires_grad_() for x in rows], [x.clone().requires_grad_() for x in rows]
    ours, theirs = ours_fn(*ours_rows), theirs_fn(*their_rows)
    torch.testing.assert_close(ours.detach(), theirs.detach())
    ours.backward()
    if theirs.requires_grad:
        theirs.backward()
    for mine, peer in zip(ours_rows, their_rows, strict=True):
        torch.testing.assert_close(mine.grad, peer.grad)


def assert_same_loss_and_gradient(ours_fn, pml_fn, x, labels, ref=None, ref_labels=None, indices=None) -> None:
    """Our loss and PML's on copies of the same rows (a ref set, mined tuples) agree, and so do
    their gradients on the rows and on the ref rows."""
    assert_same_value_and_gradients(
        lambda x, ref=None: ours_fn(x, labels, ref_embeddings=ref, ref_labels=ref_labels, indices=indices),
        lambda x, ref=None: pml_fn(x, labels, indices_tuple=as_pml(indices), ref_emb=ref, ref_labels=ref_labels),
        *((x,) if ref is None else (x, ref)))


class Precomputed(nn.Module):
    """A module for a sentence-transformers model stack: its sentence embeddings are the tensor stored
    under ``key`` in the features, so a peer loss sees exactly the rows the test chose."""

    def __init__(self, key: str, dim: int | None = None, tokenizer: Any = None):
        super().__init__()
        self.key, self.dim, self.tokenizer = key, dim, tokenizer
        self.max_seq_length = 128  # read by peer losses that compare their models' limits

    def forward(self, features: dict) -> dict:
        return {**features, "sentence_embedding": features[self.key]}

    def get_embedding_dimension(self) -> int | None:
        return self.dim


def word_level_tokenizer() -> Any:
    """A real (tiny) Hugging Face tokenizer: peer losses that compare their models' vocabularies need one."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"[UNK]": 0, "[PAD]": 1}, unk_token="[UNK]")),
                                   unk_token="[UNK]", pad_token="[PAD]")


def precomputed_st_model(key: str, dim: int | None = None, tokenizer: Any = None) -> nn.Module:
    """A real ``SentenceTransformer`` (public API only) whose one module returns the precomputed
    embeddings under ``key``: peer losses are built with their own constructors around it."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(modules=[Precomputed(key, dim, tokenizer)], device="cpu")


def naive_ranking_loss(similarities: list[torch.Tensor], scores: torch.Tensor, scale: float) -> torch.Tensor:
    """CoSENT's objective as a double loop: ``log(1 + sum_{i, j: y_i > y_j} exp(scale * (s_j - s_i)))``."""
    total = torch.ones((), dtype=similarities[0].dtype)
    for i in range(len(scores)):
        for j in range(len(scores)):
            if scores[i] > scores[j]:
                total = total + torch.exp(scale * (similarities[j] - similarities[i]))
    return torch.log(total)


def assert_matches_naive_with_gradients(loss_fn: Callable[..., torch.Tensor], naive_fn: Callable[..., torch.Tensor],
                                        use_ref: bool) -> None:
    """On :data:`LABELS` rows (and :data:`REF_LABELS` ref rows), ``loss_fn`` equals
    ``naive_fn(x, labels, ref, ref_labels)``, and so do their gradients on the rows and the ref rows."""
    x = randn(8, 5).requires_grad_()
    ref = randn(7, 5, seed=1).requires_grad_() if use_ref else None
    kwargs = dict(ref_embeddings=ref, ref_labels=REF_LABELS) if use_ref else {}
    ours = loss_fn(x, LABELS, **kwargs)
    expected = naive_fn(x, LABELS, ref, REF_LABELS if use_ref else None)
    torch.testing.assert_close(ours, expected)
    inputs = [x] if ref is None else [x, ref]
    for got, want in zip(torch.autograd.grad(ours, inputs), torch.autograd.grad(expected, inputs), strict=True):
        torch.testing.assert_close(got, want)


def assert_pml_parity_on_labelled_rows(ours: nn.Module, theirs: nn.Module, use_ref: bool, mined: bool) -> None:
    """:func:`assert_same_loss_and_gradient` on 12 labelled rows of 4 classes (9 ref rows, some pairs mined)."""
    x, labels, ref, ref_labels = labelled_rows(use_ref, n=12, ref_n=9, dim=8, classes=4, seed=1)
    indices = some_pairs(labels, ref_labels) if mined else None
    assert_same_loss_and_gradient(ours, theirs, x, labels, ref, ref_labels, indices)


def assert_finite_with_gradient(loss_fn: Callable[..., torch.Tensor], x: torch.Tensor, *args: Any,
                                **kwargs: Any) -> torch.Tensor:
    """``loss_fn(x, *args, **kwargs)`` and its gradient on ``x`` are finite; returns the value."""
    x = x.detach().clone().requires_grad_()
    value = loss_fn(x, *args, **kwargs)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()
    return value


def assert_no_positive_warns_and_is_zero(loss_fn: Callable[..., torch.Tensor], labels: list[int]) -> None:
    """A batch without a positive pair warns, and its loss is a zero with a finite gradient."""
    x = torch.randn(len(labels), 4, requires_grad=True)
    with pytest.warns(DegenerateBatchWarning, match="positive"):
        value = loss_fn(x, torch.tensor(labels))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(x.grad).all()


def hard_batch(kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Six rows in two classes, made hard: ``identical`` rows, ``one_class``, ``zero_rows``, or ``antipodal``
    (unit rows at distances exactly 0 and 2)."""
    x, labels = random_batch(n=6, dim=4, num_classes=2, dtype=torch.float32)
    if kind == "identical":
        x = torch.ones(6, 4)
    elif kind == "one_class":
        labels = torch.zeros(6, dtype=torch.long)
    elif kind == "zero_rows":
        x = torch.zeros(6, 4)
    elif kind == "antipodal":
        x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]]).repeat(3, 1)
    else:
        raise ValueError(kind)
    return x, labels


def mined_pair_lists(labels: torch.Tensor) -> tuple[PairIndices, tuple[list[tuple[int, int]], list[tuple[int, int]]]]:
    """:func:`some_pairs` of ``labels``, and the same as (positive pairs, negative pairs) lists of (anchor, row)."""
    mined = some_pairs(labels)
    pairs = tuple(list(zip(a.tolist(), b.tolist(), strict=True))
                  for a, b in ((mined.anchor_pos, mined.positive), (mined.anchor_neg, mined.negative)))
    return mined, pairs


def assert_same_value_and_input_gradient(ours_fn: Callable[..., torch.Tensor], theirs_fn: Callable[..., torch.Tensor],
                                         x: torch.Tensor, labels: torch.Tensor, **tolerance: float) -> None:
    """Our loss and a peer's on ``x`` agree, and so do their gradients on ``x`` (the peer's value cast to ours)."""
    x = x.detach().clone().requires_grad_()
    value = ours_fn(x, labels)
    (grad,) = torch.autograd.grad(value, x)
    expected = theirs_fn(x, labels)
    (expected_grad,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(value, expected.to(value.dtype), **tolerance)
    torch.testing.assert_close(grad, expected_grad, **tolerance)


def random_subset(indices: PairIndices | TripletIndices, seed: int = 0, neg_fraction: float = 0.5
                  ) -> PairIndices | TripletIndices:
    """A random part of mined tuples: 30% of triplets, or half the positive pairs and ``neg_fraction`` of
    the negative pairs."""
    generator = torch.Generator().manual_seed(seed)
    if isinstance(indices, TripletIndices):
        keep = torch.rand(len(indices), generator=generator) < 0.3
        return TripletIndices(indices.anchor[keep], indices.positive[keep], indices.negative[keep])
    pos = torch.rand(len(indices.anchor_pos), generator=generator) < 0.5
    neg = torch.rand(len(indices.anchor_neg), generator=generator) < neg_fraction
    return PairIndices(indices.anchor_pos[pos], indices.positive[pos], indices.anchor_neg[neg], indices.negative[neg])
