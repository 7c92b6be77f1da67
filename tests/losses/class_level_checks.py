"""Helpers shared by the tests of the classification and proxy losses (they own class vectors)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch

from textdml.losses.base import DegenerateBatchWarning

NUM_CLASSES = 4
EMBEDDING_SIZE = 6


def labelled_rows(n: int = 8, seed: int = 0, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random embeddings; labels cycle over the classes, so every class appears when ``n >= C``."""
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(n, EMBEDDING_SIZE, generator=generator, dtype=dtype)
    labels = torch.arange(n) % NUM_CLASSES
    return embeddings, labels


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def cross_entropy(logits: list[float], target: int) -> float:
    """``-log softmax(logits)[target]`` written out."""
    return -logits[target] + math.log(sum(math.exp(logit) for logit in logits))


def assert_matches_naive(loss: torch.nn.Module, naive: Callable[[torch.Tensor, torch.Tensor], float]) -> None:
    """The loss equals the naive loop on a batch, and with reference rows on the concatenated rows."""
    embeddings, labels = labelled_rows(n=7, seed=1)
    expected = naive(embeddings, labels)
    assert math.isclose(loss(embeddings, labels).item(), expected, rel_tol=1e-9, abs_tol=1e-9)
    ref, ref_labels = labelled_rows(n=5, seed=2)
    ref_labels = ref_labels.flip(0)
    expected = naive(torch.cat([embeddings, ref]), torch.cat([labels, ref_labels]))
    got = loss(embeddings, labels, ref_embeddings=ref, ref_labels=ref_labels)
    assert math.isclose(got.item(), expected, rel_tol=1e-9, abs_tol=1e-9)


def assert_bfloat16_close_to_float32(loss: torch.nn.Module, input_atol: float = 5e-2, cast_atol: float = 1e-1) -> None:
    """bfloat16 rows give a float32 loss close to float32's; so does the loss itself cast to bfloat16
    (a loss cast with the model still computes in float32)."""
    embeddings, labels = labelled_rows(dtype=torch.float32)
    expected = loss(embeddings, labels)
    got = loss(embeddings.bfloat16(), labels)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=5e-2, atol=input_atol)
    got = loss.to(torch.bfloat16)(embeddings.bfloat16(), labels)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-1, atol=cast_atol)


def assert_gradcheck_embeddings_and_parameters(loss: torch.nn.Module) -> None:
    """``gradcheck`` through the loss on a few rows, with respect to the rows and every parameter."""
    embeddings, labels = labelled_rows(n=5)
    names = [name for name, _ in loss.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in loss.named_parameters()]

    def run(x: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(loss, dict(zip(names, values, strict=True)), (x, labels))

    assert torch.autograd.gradcheck(run, (embeddings.requires_grad_(), *params))


def hard_batch(kind: str, on_class: Callable[[torch.Tensor], torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`labelled_rows` in float32, made hard: ``one_class``, ``identical_rows``, ``zero_rows``, ``one_row``,
    or any other kind: each row exactly on its class vector, ``on_class(labels)``."""
    embeddings, labels = labelled_rows(dtype=torch.float32)
    if kind == "one_class":
        labels = torch.zeros_like(labels)
    elif kind == "identical_rows":
        embeddings = embeddings[:1].repeat(len(embeddings), 1)
    elif kind == "zero_rows":
        embeddings = torch.zeros_like(embeddings)
    elif kind == "one_row":
        embeddings, labels = embeddings[:1], labels[:1]
    else:
        embeddings = on_class(labels).detach().clone()
    return embeddings, labels


def assert_finite_without_warning(loss: torch.nn.Module, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    """The loss warns of no degenerate batch, and it and its gradients on the rows and every parameter are finite."""
    embeddings = embeddings.clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateBatchWarning)
        value = loss(embeddings, labels)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(embeddings.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in loss.parameters())
