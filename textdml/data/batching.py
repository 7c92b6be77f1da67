"""Batch samplers for scale: no duplicate texts, one data set per batch, and token budgets.

Each yields lists of row indices (pass it as ``batch_sampler=`` to a ``DataLoader``), plans an
epoch from ``(seed, epoch)`` only, so every process of a distributed run computes the same
batches, and knows its exact length. Call ``set_epoch`` before each epoch.

Under DDP, let the loop shard the batches (Accelerate's ``prepare`` does): for duplicates to be
excluded from the *global* batch, sample global batches (``batch_size`` = per-device batch x
world size) and split each one across devices (Accelerate's ``split_batches=True``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from torch.utils.data import Sampler

TextRows = Sequence[Sequence[Any]] | Mapping[str, Sequence[Any]] | Any  # rows, columns, or a datasets.Dataset


class EpochPlanSampler(Sampler[list[int]]):
    """A batch sampler whose epoch is planned once, from ``(seed, epoch)``, then replayed."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.epoch = 0
        self._plan: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields."""
        self.epoch = epoch

    def rng(self, *streams: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, *streams])

    def plan_epoch(self) -> list[list[int]]:
        raise NotImplementedError

    def batches(self) -> list[list[int]]:
        """This epoch's batches (computed on first use, then cached)."""
        if self._plan is None or self._plan[0] != self.epoch:
            self._plan = (self.epoch, self.plan_epoch())
        return self._plan[1]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def _hash_cells(cells: Sequence[Any]) -> list[np.ndarray]:
    """Hash columns for one column of cells; a cell may be a text or a list of texts (negatives)."""
    if not any(isinstance(cell, (list, tuple)) for cell in cells):
        return [np.fromiter(map(hash, cells), dtype=np.int64, count=len(cells))]
    width = max(len(cell) if isinstance(cell, (list, tuple)) else 1 for cell in cells)
    rows = []
    for position, cell in enumerate(cells):
        hashes = [hash(t) for t in (cell if isinstance(cell, (list, tuple)) else [cell])]
        # Pad short rows with their own first hash (repeating it cannot create a conflict); an
        # empty cell gets a hash of its own.
        hashes = hashes or [hash(("textdml-empty-cell", position))]
        rows.append(hashes + hashes[:1] * (width - len(hashes)))
    return list(np.asarray(rows, dtype=np.int64).T)


def _text_columns(dataset: Any) -> list[str]:
    """The string (or list-of-string) columns of a ``datasets.Dataset``."""
    columns = []
    for name, feature in dataset.features.items():
        inner = getattr(feature, "feature", feature)  # Sequence / List features wrap their item type
        if getattr(inner, "dtype", None) in ("string", "large_string"):
            columns.append(name)
    return columns


def hash_texts(texts_per_row: TextRows, columns: Sequence[str] | None = None) -> np.ndarray:
    """``(N, k)`` int64: a hash of every text of every row.

    Python's string hash is salted per process, but only equality of hashes is used, so every
    process plans the same batches (up to a 64-bit collision, vanishingly rare).
    """
    if hasattr(texts_per_row, "features") and hasattr(texts_per_row, "column_names"):  # datasets.Dataset
        names = list(columns) if columns is not None else _text_columns(texts_per_row)
        if not names:
            raise ValueError(f"no text columns among {texts_per_row.column_names}; pass columns=")
        column_cells = [texts_per_row[name] for name in names]
    elif isinstance(texts_per_row, Mapping):
        names = list(columns) if columns is not None else list(texts_per_row)
        column_cells = [list(texts_per_row[name]) for name in names]
    else:
        rows = list(texts_per_row)
        widths = {len(row) for row in rows}
        column_cells = [list(column) for column in zip(*rows, strict=True)] if len(widths) == 1 else [rows]
    if not column_cells or len(column_cells[0]) == 0:
        return np.zeros((0, 1), dtype=np.int64)
    return np.stack([hashes for cells in column_cells for hashes in _hash_cells(cells)], axis=1)


class NoDuplicatesBatchSampler(EpochPlanSampler):
    """Batches in which no text appears twice, for losses with in-batch negatives.

    A repeated text in a batch is a false negative for InfoNCE-style losses: the anchor is
    pushed away from its own positive. Rows are taken in a shuffled order; a row goes into the
    first batch that holds none of its texts and is not full, and batches are yielded in order.

    Each row is placed in amortised constant time: a dictionary maps each text to the last batch
    that holds it, so the row's batch is the first non-full batch after those (found through a
    union-find of full batches). Nothing is rescanned, so 1M pairs plan in seconds.

    Args:
        texts_per_row: the texts of each row: a sequence of tuples (``(anchor, positive, ...)``),
            a mapping column name -> texts, or a ``datasets.Dataset`` (its string columns, or
            ``columns``). A cell may be a list of texts (a list column of negatives).
        batch_size: rows per batch.
        drop_last: drop incomplete batches. Rows pushed back by duplicates can leave a few
            incomplete batches at the end of an epoch; ``drop_last=False`` yields them.
        seed: base seed; the epoch's order is a function of ``(seed, epoch)``.
        columns: the columns to read from a data set (default: all string columns).

    Conventions:
        sentence-transformers' NoDuplicatesBatchSampler rescans the rows it skipped for every
        batch (quadratic when texts repeat often) and estimates its length; this one plans the
        epoch in linear time and its length is exact. Texts are compared exactly as strings.

    Example:
        >>> rows = [("a", "b"), ("a", "c"), ("d", "e"), ("f", "g")]
        >>> batches = list(NoDuplicatesBatchSampler(rows, batch_size=2))
        >>> all(not ({0, 1} <= set(batch)) for batch in batches)  # rows 0 and 1 share "a"
        True
    """

    def __init__(
        self,
        texts_per_row: TextRows,
        batch_size: int,
        drop_last: bool = False,
        seed: int = 0,
        columns: Sequence[str] | None = None,
    ):
        super().__init__(seed)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.row_hashes = hash_texts(texts_per_row, columns)  # (N, k)

    def plan_epoch(self) -> list[list[int]]:
        order = self.rng().permutation(len(self.row_hashes))
        return list(self._place_rows(order.tolist(), self.row_hashes[order].tolist()))

    def _place_rows(self, order: list[int], hashes: list[list[int]]) -> Iterator[list[int]]:
        size = self.batch_size
        last_batch: dict[int, int] = {}  # text hash -> the highest batch holding it
        members: list[list[int]] = []  # rows of each batch
        member_hashes: list[list[int]] = []
        next_open: list[int] = []  # union-find: a batch, or a later one when it is full
        done = 0  # batches before this one are full and yielded

        def create_up_to(batch: int) -> None:
            while len(members) <= batch:
                next_open.append(len(members))
                members.append([])
                member_hashes.append([])

        def first_open(batch: int) -> int:
            create_up_to(batch)
            root = batch
            while next_open[root] != root:
                root = next_open[root]
                create_up_to(root)
            while next_open[batch] != root:  # path compression
                next_open[batch], batch = root, next_open[batch]
            return root

        for row, row_hashes in zip(order, hashes, strict=True):
            # Every batch after the last one holding any of the row's texts is free of them.
            after = max(last_batch.get(h, -1) for h in row_hashes) + 1
            batch = first_open(max(after, done))
            members[batch].append(row)
            member_hashes[batch].extend(row_hashes)
            for h in row_hashes:
                last_batch[h] = batch
            if len(members[batch]) == size:
                next_open[batch] = batch + 1
            while done < len(members) and len(members[done]) == size:
                yield members[done]
                # A text whose last batch is now yielded cannot collide again: forget it.
                for h in member_hashes[done]:
                    if last_batch.get(h) == done:
                        del last_batch[h]
                members[done], member_hashes[done] = [], []
                done += 1
        if not self.drop_last:
            yield from (batch for batch in members[done:] if batch)


class MultiDatasetBatchSampler(EpochPlanSampler):
    """Batches from several data sets concatenated (a ``ConcatDataset``), one data set per batch.

    Mixing data sets inside a batch gives easy negatives (a question is trivially told apart
    from a caption); one data set per batch keeps in-batch negatives hard and the columns alike.

    Args:
        lengths: the number of rows of each data set, in ``ConcatDataset`` order.
        batch_size: rows per batch.
        strategy: ``proportional`` (every batch of every data set, in a shuffled order, so
            larger data sets come up more often) or ``round_robin`` (data sets take turns and
            the epoch ends when the next one has no batch left: equal weight, some rows unused).
        seed: base seed; the epoch's order is a function of ``(seed, epoch)``.
        drop_last: drop each data set's last incomplete batch.
        batch_samplers: optional per-data-set batch samplers yielding *local* indices (e.g. a
            :class:`NoDuplicatesBatchSampler` for each); by default rows are shuffled and cut.

    Example:
        >>> sampler = MultiDatasetBatchSampler([4, 2], batch_size=2, strategy="proportional")
        >>> sorted(len({i < 4 for i in batch}) for batch in sampler)  # one data set per batch
        [1, 1, 1]
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        strategy: Literal["round_robin", "proportional"] = "proportional",
        seed: int = 0,
        drop_last: bool = False,
        batch_samplers: Sequence[Iterable[list[int]]] | None = None,
    ):
        super().__init__(seed)
        if strategy not in ("round_robin", "proportional"):
            raise ValueError(f"unknown strategy {strategy!r}: use 'round_robin' or 'proportional'")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if batch_samplers is not None and len(batch_samplers) != len(lengths):
            raise ValueError(f"{len(lengths)} data sets but {len(batch_samplers)} batch samplers")
        self.lengths = [int(n) for n in lengths]
        self.offsets = np.r_[0, np.cumsum(self.lengths)[:-1]].tolist()
        self.batch_size = batch_size
        self.strategy = strategy
        self.drop_last = drop_last
        self.batch_samplers = batch_samplers

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        for sampler in self.batch_samplers or []:
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)

    def dataset_batches(self, dataset: int) -> list[list[int]]:
        """One data set's batches of this epoch, as global indices."""
        if self.batch_samplers is not None:
            local = [list(batch) for batch in self.batch_samplers[dataset]]
        else:
            order = self.rng(dataset).permutation(self.lengths[dataset]).tolist()
            local = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
            if self.drop_last and local and len(local[-1]) < self.batch_size:
                local.pop()
        offset = self.offsets[dataset]
        return [[offset + i for i in batch] for batch in local]

    def plan_epoch(self) -> list[list[int]]:
        per_dataset = [self.dataset_batches(d) for d in range(len(self.lengths))]
        if self.strategy == "proportional":
            turns = np.repeat(np.arange(len(per_dataset)), [len(b) for b in per_dataset])
            turns = self.rng(len(per_dataset)).permutation(turns).tolist()
        else:
            rounds = min(len(b) for b in per_dataset)
            # Full rounds, then the data sets before the first exhausted one take one more turn.
            first_exhausted = next(d for d, b in enumerate(per_dataset) if len(b) == rounds)
            turns = list(range(len(per_dataset))) * rounds + list(range(first_exhausted))
        cursors = [0] * len(per_dataset)
        batches = []
        for dataset in turns:
            batches.append(per_dataset[dataset][cursors[dataset]])
            cursors[dataset] += 1
        return batches


class TokenBudgetBatchSampler(EpochPlanSampler):
    """Batches of similar length whose padded size ``max_len * count`` stays within ``max_tokens``.

    Short texts make large batches and long texts small ones, so the memory of a padded batch is
    about constant and little of it is padding. Rows are sorted by length (ties in a random
    order each epoch) and packed greedily; the order of the batches is shuffled.

    Args:
        lengths: the token length of each row (after truncation; for pairs, the longest text).
        max_tokens: the largest ``max_len * count`` of a batch.
        seed: base seed; the epoch's order is a function of ``(seed, epoch)``.
        shuffle: shuffle the order of the batches (otherwise shortest first).
        max_batch_size: an upper bound on the rows of a batch, whatever their length.

    Example:
        >>> sampler = TokenBudgetBatchSampler([3, 9, 4, 10, 2], max_tokens=20, shuffle=False)
        >>> list(sampler)
        [[4, 0, 2], [1, 3]]
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        max_tokens: int,
        seed: int = 0,
        shuffle: bool = True,
        max_batch_size: int | None = None,
    ):
        super().__init__(seed)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        too_long = np.flatnonzero(self.lengths > max_tokens)
        if len(too_long):
            row = int(too_long[0])
            raise ValueError(f"row {row} has {self.lengths[row]} tokens, more than max_tokens={max_tokens}; "
                             f"raise max_tokens or truncate ({len(too_long)} rows are too long)")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.max_batch_size = max_batch_size

    def plan_epoch(self) -> list[list[int]]:
        rng = self.rng()
        shuffled = rng.permutation(len(self.lengths))
        by_length = shuffled[np.argsort(self.lengths[shuffled], kind="stable")]
        limit = self.max_batch_size or len(by_length)
        batches: list[list[int]] = []
        batch: list[int] = []
        for row, length in zip(by_length.tolist(), self.lengths[by_length].tolist(), strict=True):
            # Ascending lengths: this row's length is the batch's longest once it joins.
            if batch and ((len(batch) + 1) * length > self.max_tokens or len(batch) == limit):
                batches.append(batch)
                batch = []
            batch.append(row)
        if batch:
            batches.append(batch)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches
