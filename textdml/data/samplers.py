"""Batch samplers that put m samples of each of several classes in every batch.

Miners and most pair-based losses need positives inside the batch: a batch of ``batch_size``
rows drawn at random from thousands of classes has almost none. :class:`MPerClassSampler`
builds each batch from ``batch_size // m`` distinct classes with ``m`` rows each, for map-style
datasets; :func:`m_per_class_stream` does the same for streamed (iterable) datasets.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler


def check_batch_shape(m: int, batch_size: int) -> int:
    """The number of classes per batch; a clear error when ``m`` does not divide ``batch_size``."""
    if m < 1 or batch_size < 1:
        raise ValueError(f"m and batch_size must be >= 1, got m={m}, batch_size={batch_size}")
    if batch_size % m:
        raise ValueError(f"batch_size ({batch_size}) must be a multiple of m ({m}): each class fills m rows")
    return batch_size // m


def distributed_world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """``(num_replicas, rank)``: the given values, else the process group's (``(1, 0)`` without one)."""
    from textdml import distributed

    if num_replicas is None:
        num_replicas = distributed.world_size()
    if rank is None:
        rank = distributed.rank()
    if not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
    return num_replicas, rank


def occurrence_rank(values: np.ndarray) -> np.ndarray:
    """For each position, how many earlier positions hold the same value (0 for a first occurrence)."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    group_start = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    group_sizes = np.diff(np.r_[group_start, len(values)])
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.arange(len(values)) - np.repeat(group_start, group_sizes)
    return rank


class MPerClassSampler(Sampler[list[int]]):
    """Batch sampler: every batch holds ``batch_size // m`` distinct classes with ``m`` rows each.

    Pass it as ``batch_sampler=`` to a ``DataLoader``. Within an epoch each class is visited in
    shuffled order and its rows are handed out in a shuffled order without repeats until they
    run out, so every row is seen before any row of its class repeats; a class with fewer than
    ``m`` rows fills its slots by sampling with replacement. Classes are drawn by reshuffling the
    list of classes once per pass, so all classes appear equally often. The order depends only
    on ``seed`` and the epoch (:meth:`set_epoch`), and under DDP every rank builds the same global
    list of batches and takes a disjoint share of it.

    Args:
        labels: the class of each dataset row (any hashable values, a list, array or tensor).
        m: rows per class in a batch.
        batch_size: rows per batch (per rank under DDP); a multiple of ``m``.
        length_before_new_iter: rows per epoch over all ranks (default: the dataset size); the
            epoch has ``length_before_new_iter // (batch_size * num_replicas)`` batches per rank.
        seed: base seed; the epoch's order is a function of ``(seed, epoch)``.
        num_replicas: number of DDP ranks (default: from torch.distributed, else 1).
        rank: this rank (default: from torch.distributed, else 0).

    Requirements:
        At least ``batch_size // m`` classes.

    Conventions:
        pytorch-metric-learning's MPerClassSampler yields single indices (used with
        ``batch_size=``) from a global numpy RNG and redraws rows independently for each visit;
        this one yields whole batches, is reproducible per epoch and splits batches across ranks.

    Example:
        >>> sampler = MPerClassSampler([0, 0, 1, 1, 2, 2, 3, 3], m=2, batch_size=4)
        >>> batch = next(iter(sampler))
        >>> len(batch), len(sampler)
        (4, 2)
    """

    def __init__(
        self,
        labels: Sequence[Hashable] | np.ndarray | torch.Tensor,
        m: int,
        batch_size: int,
        length_before_new_iter: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        self.m = int(m)
        self.batch_size = int(batch_size)
        self.classes_per_batch = check_batch_shape(self.m, self.batch_size)
        _, class_of_row = np.unique(labels, return_inverse=True)
        self.class_of_row = class_of_row.reshape(-1)
        self.num_classes = int(self.class_of_row.max()) + 1 if len(self.class_of_row) else 0
        if self.num_classes < self.classes_per_batch:
            raise ValueError(
                f"a batch needs {self.classes_per_batch} classes (batch_size {batch_size} / m {m}) "
                f"but the labels hold only {self.num_classes}"
            )
        self.class_sizes = np.bincount(self.class_of_row, minlength=self.num_classes)
        self.class_start = np.r_[0, np.cumsum(self.class_sizes)[:-1]]
        self.num_replicas, self.rank = distributed_world(num_replicas, rank)
        length = len(labels) if length_before_new_iter is None else int(length_before_new_iter)
        self.num_batches = length // (self.batch_size * self.num_replicas)
        if self.num_batches < 1:
            raise ValueError(
                f"length_before_new_iter ({length}) must hold at least one batch of {self.batch_size} "
                f"rows per rank ({self.num_replicas} ranks)"
            )
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration yields (call it before each epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.global_batches()[self.rank :: self.num_replicas]
        return iter(batches.tolist())

    def global_batches(self) -> np.ndarray:
        """(num_batches * num_replicas, batch_size) row indices of this epoch, identical on every rank."""
        rng = np.random.default_rng([self.seed, self.epoch])
        total = self.num_batches * self.num_replicas
        classes = self.draw_classes(rng, total)  # (total, classes_per_batch)
        rows = self.draw_rows(rng, classes.reshape(-1))  # (total * classes_per_batch, m)
        return rows.reshape(total, self.batch_size)

    def draw_classes(self, rng: np.random.Generator, num_batches: int) -> np.ndarray:
        """Distinct classes for each batch: consecutive slices of repeated shuffles of all classes."""
        per_pass = self.num_classes // self.classes_per_batch
        passes = -(-num_batches // per_pass)
        shuffles = rng.permuted(np.tile(np.arange(self.num_classes), (passes, 1)), axis=1)
        # The classes left over at the end of a pass are dropped, so no batch spans two shuffles.
        usable = shuffles[:, : per_pass * self.classes_per_batch]
        return usable.reshape(-1, self.classes_per_batch)[:num_batches]

    def draw_rows(self, rng: np.random.Generator, slot_classes: np.ndarray) -> np.ndarray:
        """``m`` rows for each class slot: a shuffled walk through the class, or with replacement when it is small."""
        # Rows grouped by class, in a random order within each class.
        by_class = np.lexsort((rng.random(len(self.class_of_row)), self.class_of_row))
        sizes = self.class_sizes[slot_classes][:, None]  # (S, 1)
        # The k-th visit of a class takes its next m rows, wrapping around when they run out.
        visit = occurrence_rank(slot_classes)[:, None]
        walk = (visit * self.m + np.arange(self.m)) % sizes
        random_pick = rng.integers(0, sizes, size=(len(slot_classes), self.m))
        position = np.where(sizes >= self.m, walk, random_pick)
        return by_class[self.class_start[slot_classes][:, None] + position]


def m_per_class_stream(
    rows: Iterable[Mapping[str, Any]],
    label_key: str,
    m: int,
    batch_size: int,
    buffer_size: int = 10_000,
    seed: int = 0,
) -> Iterator[list[Mapping[str, Any]]]:
    """Group a stream of rows into batches of ``batch_size // m`` classes with ``m`` rows each.

    Rows wait in per-label queues. As soon as ``batch_size // m`` labels have ``m`` rows waiting,
    a batch takes ``m`` rows from each of that many of them, chosen at random. When the queues
    hold ``buffer_size`` rows (too many rare labels to complete a batch) and at the end of the
    stream, batches are filled from the fullest queues instead, so a class may then contribute
    fewer than ``m`` rows; the last batch may be smaller than ``batch_size``.

    Args:
        rows: the stream (e.g. a ``datasets`` IterableDataset or a generator of dicts).
        label_key: the column that holds the class.
        m: rows per class in a batch.
        batch_size: rows per batch; a multiple of ``m``.
        buffer_size: the most rows held back waiting for their class to fill up.
        seed: seed of the choice among ready classes.

    Example:
        >>> stream = ({"text": str(i), "label": i % 3} for i in range(12))
        >>> batches = list(m_per_class_stream(stream, "label", m=2, batch_size=4))
        >>> sorted(row["label"] for row in batches[0])
        [0, 0, 1, 1]
    """
    classes_per_batch = check_batch_shape(m, batch_size)
    if buffer_size < batch_size:
        raise ValueError(f"buffer_size ({buffer_size}) must hold at least one batch ({batch_size} rows)")
    rng = np.random.default_rng(seed)
    queues: dict[Hashable, deque] = {}
    ready: list[Hashable] = []  # labels with at least m rows waiting, in arrival order
    buffered = 0

    def take(label: Hashable, count: int) -> list[Mapping[str, Any]]:
        nonlocal buffered
        queue = queues[label]
        taken = [queue.popleft() for _ in range(min(count, len(queue)))]
        buffered -= len(taken)
        if len(queue) < m and label in ready:
            ready.remove(label)
        if not queue:
            del queues[label]
        return taken

    def fill_from_fullest() -> list[Mapping[str, Any]]:
        batch: list[Mapping[str, Any]] = []
        for label in sorted(queues, key=lambda key: len(queues[key]), reverse=True):
            if len(batch) == batch_size:
                break
            batch += take(label, min(m, batch_size - len(batch)))
        return batch

    for row in rows:
        label = row[label_key]
        label = label.item() if isinstance(label, (torch.Tensor, np.generic)) else label
        queues.setdefault(label, deque()).append(row)
        buffered += 1
        if len(queues[label]) == m:
            ready.append(label)
        if len(ready) >= classes_per_batch:
            chosen = [ready[i] for i in rng.choice(len(ready), classes_per_batch, replace=False)]
            yield [r for label in chosen for r in take(label, m)]
        elif buffered >= buffer_size:
            yield fill_from_fullest()
    while buffered:
        yield fill_from_fullest()
