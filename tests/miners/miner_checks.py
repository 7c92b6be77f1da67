"""Helpers shared by the miner tests: random batches and index sets that compare regardless of order."""

from __future__ import annotations

import torch

from textdml.miners import PairIndices, TripletIndices


def random_batch(
    n: int = 12, dim: int = 8, num_classes: int = 4, seed: int = 0, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random embeddings whose labels cycle over ``num_classes`` (so every class has a positive)."""
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(n, dim, generator=generator, dtype=dtype)
    labels = torch.arange(n) % num_classes
    return embeddings, labels


def random_ref_batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A query batch and a separate reference batch that share classes."""
    embeddings, labels = random_batch(n=7, num_classes=3, seed=seed)
    ref, ref_labels = random_batch(n=10, num_classes=4, seed=seed + 100)
    return embeddings, labels, ref, ref_labels


def tuple_set(indices: TripletIndices | PairIndices | tuple) -> list | tuple[list, list]:
    """Sorted tuples: a list of (a, p, n) for triplets, (positive pairs, negative pairs) for pairs.

    Accepts our dataclasses and pytorch-metric-learning's bare 3- or 4-tuples.
    """
    if isinstance(indices, TripletIndices):
        indices = (indices.anchor, indices.positive, indices.negative)
    elif isinstance(indices, PairIndices):
        indices = (indices.anchor_pos, indices.positive, indices.anchor_neg, indices.negative)
    rows = [t.tolist() for t in indices]
    if len(rows) == 3:
        return sorted(zip(*rows, strict=True))
    return sorted(zip(rows[0], rows[1], strict=True)), sorted(zip(rows[2], rows[3], strict=True))


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm()


def euclidean(x: torch.Tensor, y: torch.Tensor) -> float:
    """Distance between the L2-normalised vectors (the miners' default distance)."""
    return float((unit(x) - unit(y)).norm())


def cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(unit(x) @ unit(y))


def candidate_rows(labels: torch.Tensor, ref_labels: torch.Tensor | None, anchor: int) -> tuple[list[int], list[int]]:
    """Positive and negative reference rows of one anchor (no self-pairs without a reference set)."""
    same_set = ref_labels is None
    ref_labels = labels if same_set else ref_labels
    positives = [
        j for j in range(len(ref_labels)) if ref_labels[j] == labels[anchor] and not (same_set and j == anchor)
    ]
    negatives = [j for j in range(len(ref_labels)) if ref_labels[j] != labels[anchor]]
    return positives, negatives
