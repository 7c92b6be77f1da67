"""Classes with fewer than two rows: pair and tuple losses never see a positive for them.

Labelled data where every class has one row trains ``triplet`` (and every other loss that needs
an (anchor, positive) pair) at a loss of exactly 0.0: there is no such pair in any batch. Nothing
fails, nothing learns. Losses with a term for negatives alone (``multi_similarity``,
``contrastive``) are not 0: they push the rows apart, but never pull a class together. Which of
the two a loss does is measured (:func:`singleton_loss`), not listed. The trainer warns once at the
start (even with ``training.preflight=false``) and the preflight reports it.
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset
from torch import nn


class SmallClassesWarning(UserWarning):
    """Some (or all) classes of labelled training data have fewer than two rows."""


@dataclass(frozen=True)
class ClassCounts:
    """How many classes the labelled data has, and how many of them have fewer than two rows."""

    num_classes: int
    num_small: int
    smallest: int
    largest: int

    @property
    def all_small(self) -> bool:
        return self.num_classes > 0 and self.num_small == self.num_classes


def count_classes(labels: Iterable[Any]) -> ClassCounts:
    """Count rows per class.

    Example:
        >>> count_classes(["a", "a", "b", "c"])
        ClassCounts(num_classes=3, num_small=2, smallest=1, largest=2)
    """
    counts = Counter(labels)
    if not counts:
        return ClassCounts(0, 0, 0, 0)
    sizes = counts.values()
    return ClassCounts(len(counts), sum(1 for size in sizes if size < 2), min(sizes), max(sizes))


def learns_from_singletons(loss: nn.Module) -> bool:
    """Class-level losses (proxies, class weights, centres) learn from a class's single row."""
    from textdml.losses._margin_softmax import ClassLevelLoss

    return isinstance(loss, ClassLevelLoss)


def training_class_counts(dataset: Any, label_column: str | None) -> ClassCounts | None:
    """Class counts of a map-style data set's label column (None for streaming data or no labels)."""
    if label_column is None or not isinstance(dataset, Dataset):
        return None
    return count_classes(dataset.data.column(label_column).to_pylist())


def singleton_loss(loss: nn.Module, miner: nn.Module | None = None, rows: int = 8) -> float | None:
    """The loss (after ``miner``) on a batch whose rows are each their own class, or None when it
    cannot be computed (a loss that needs other inputs).

    The rows are close unit vectors, as an untrained encoder writes them, so no margin is met yet:
    a loss that needs a positive pair gives exactly 0.0, one with a term for negatives alone more.

    Example:
        >>> from textdml.losses.multi_similarity import MultiSimilarityLoss
        >>> from textdml.losses.triplet import TripletLoss
        >>> singleton_loss(TripletLoss()), singleton_loss(MultiSimilarityLoss()) > 0
        (0.0, True)
    """
    from textdml.losses.base import DegenerateBatchWarning

    dim = int(getattr(loss, "embedding_size", None) or 16)
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(1, dim, generator=generator)
    embeddings = nn.functional.normalize(base + 0.3 * torch.randn(rows, dim, generator=generator), dim=1)  # (B, D)
    labels = torch.arange(rows)
    try:
        # Copies on the CPU: a loss or miner with state (a memory bank, a counter) must not see this batch.
        loss, miner = copy.deepcopy(loss).cpu(), copy.deepcopy(miner).cpu() if miner is not None else None
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DegenerateBatchWarning)
            indices = miner(embeddings, labels) if miner is not None else None
            return float(loss(embeddings, labels, indices=indices)) + 0.0  # -0.0 (an empty sum) reads 0.0
    except Exception:  # noqa: BLE001 - unknown: the message then claims nothing about the value
        return None


def small_classes_message(counts: ClassCounts, loss_name: str, without_positives: float | None = 0.0) -> str:
    """The warning text: how many classes, what happens, and the fix.

    ``without_positives``: the loss on a batch of one-row classes (:func:`singleton_loss`); 0.0
    means the loss learns nothing from such a batch, more that it only pushes rows apart.
    """
    if counts.all_small and without_positives == 0.0:
        effect = (f"no batch holds a positive pair, so loss {loss_name!r} is 0.0 at every step and the model "
                  "does not learn")
    elif counts.all_small:
        effect = (f"no batch holds a positive pair, so loss {loss_name!r} only pushes rows apart (its terms for "
                  "negatives) and never pulls a class together")
    else:
        effect = "their rows are only ever negatives, never anchors of a positive pair"
    return (f"{counts.num_small} of {counts.num_classes} classes in the training data have fewer than two rows: "
            f"{effect}. Give each class at least two rows (merge or drop the small classes), or use a "
            "class-level loss that learns from single rows (proxy_anchor, arc_face, norm_softmax)")


def warn_small_classes(dataset: Any, label_column: str | None, loss: nn.Module, loss_name: str,
                       miner: nn.Module | None = None) -> ClassCounts | None:
    """Warn once (``SmallClassesWarning``) when labelled training data has classes of one row."""
    counts = training_class_counts(dataset, label_column)
    if counts is not None and counts.num_small and not learns_from_singletons(loss):
        without_positives = singleton_loss(loss, miner) if counts.all_small else None
        warnings.warn(small_classes_message(counts, loss_name, without_positives), SmallClassesWarning, stacklevel=2)
    return counts
