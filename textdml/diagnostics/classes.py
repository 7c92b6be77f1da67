"""Classes with fewer than two rows: pair and tuple losses never see a positive for them.

Labelled data where every class has one row trains ``triplet`` (and every other pair / tuple
loss) at a loss of exactly 0.0: there is no (anchor, positive) pair in any batch. Nothing fails,
nothing learns. The trainer warns once at the start (even with ``training.preflight=false``) and
the preflight reports it.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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


def small_classes_message(counts: ClassCounts, loss_name: str) -> str:
    """The warning text: how many classes, what happens, and the fix."""
    if counts.all_small:
        effect = (f"no batch holds a positive pair, so loss {loss_name!r} is 0.0 at every step and the model "
                  "does not learn")
    else:
        effect = "their rows are only ever negatives, never anchors of a positive pair"
    return (f"{counts.num_small} of {counts.num_classes} classes in the training data have fewer than two rows: "
            f"{effect}. Give each class at least two rows (merge or drop the small classes), or use a "
            "class-level loss that learns from single rows (proxy_anchor, arc_face, norm_softmax)")


def warn_small_classes(dataset: Any, label_column: str | None, loss: nn.Module, loss_name: str) -> ClassCounts | None:
    """Warn once (``SmallClassesWarning``) when labelled training data has classes of one row."""
    counts = training_class_counts(dataset, label_column)
    if counts is not None and counts.num_small and not learns_from_singletons(loss):
        warnings.warn(small_classes_message(counts, loss_name), SmallClassesWarning, stacklevel=2)
    return counts
