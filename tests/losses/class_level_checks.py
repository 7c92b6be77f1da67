"""Helpers shared by the tests of the classification and proxy losses (they own class vectors)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

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
