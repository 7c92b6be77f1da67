"""Load training and evaluation data as ``datasets`` objects, and check it before training starts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasets import ClassLabel, Dataset, DatasetDict, IterableDataset, Sequence, load_dataset

from textdml.data.file_checks import check_text_file, explain_load_failure
from textdml.data.roles import ColumnRoles
from textdml.registry import DATASETS

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".tsv": "csv"}


def builtin_source(name: str) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Register a builder of a ``textdml:<name>`` data set (the built-in ones are listed in ``DATASETS``)."""
    return DATASETS.register(name)


def load_data(
    path: str,
    *,
    split: str = "train",
    name: str | None = None,
    data_files: Any = None,
    streaming: bool = False,
    max_rows: int | None = None,
    **kwargs: Any,
) -> Dataset | IterableDataset:
    """A ``Dataset`` (or ``IterableDataset`` when streaming) from a Hub id, a local file or a builtin.

    Args:
        path: a Hub dataset id, a local ``.jsonl/.json/.csv/.tsv/.parquet`` file or folder, or a
            builtin name (``textdml:wordnet``).
        split: which split to take.
        name: the Hub configuration name (or the builtin's variant).
        data_files: passed to ``datasets.load_dataset``.
        streaming: read lazily as an ``IterableDataset``.
        max_rows: keep the first rows only.
        kwargs: passed to the builtin builder.
    """
    if path.startswith("textdml:"):
        builder = path.split(":", 1)[1]
        if builder not in DATASETS:
            raise ValueError(f"unknown builtin data set {path!r}; builtins: {DATASETS.names()}")
        dataset = DATASETS.get(builder)(split=split, name=name, **kwargs)
        if streaming:
            dataset = dataset.to_iterable_dataset()
    else:
        local = Path(path).expanduser()
        if local.suffix.lower() in FILE_BUILDERS:
            if not local.exists():
                raise FileNotFoundError(f"data file {str(local)!r} does not exist")
            if local.stat().st_size == 0:
                raise ValueError(f"data file {str(local)!r} is empty")
            check_text_file(local)
            builder_name = FILE_BUILDERS[local.suffix.lower()]
            extra = {"delimiter": "\t"} if local.suffix.lower() == ".tsv" else {}
            try:
                dataset = load_dataset(builder_name, data_files={split: str(local)}, split=split,
                                       streaming=streaming, **extra)
            except Exception as err:  # pyarrow / datasets errors name neither the file nor the line
                raise explain_load_failure(local, err) from err
        elif path.startswith((".", "/", "~")) and not local.exists():
            raise FileNotFoundError(f"data path {str(local)!r} does not exist")
        else:
            dataset = load_dataset(path, name, data_files=data_files, split=split, streaming=streaming)
    if isinstance(dataset, DatasetDict):
        raise ValueError(f"{path!r} holds several splits {list(dataset)}; choose one with split=...")
    if max_rows is not None:
        dataset = dataset.take(max_rows) if isinstance(dataset, IterableDataset) else dataset.select(
            range(min(max_rows, len(dataset))))
    if isinstance(dataset, Dataset) and len(dataset) == 0:
        raise ValueError(f"data set {path!r} (split {split!r}) has no rows")
    return dataset


def check_text_columns(dataset: Dataset | IterableDataset, roles: ColumnRoles, source: str = "dataset") -> None:
    """Every text cell must be a non-empty string: report the first bad one by column and row.

    Streaming data sets are checked batch by batch in the collator instead.
    """
    if not isinstance(dataset, Dataset):
        return
    for column in roles.text_columns:
        values = dataset.data.column(column).to_pylist()
        for row, value in enumerate(values):
            cells = value if roles.negative_is_list and column in roles.negatives else [value]
            for cell in cells if isinstance(cells, list) else [cells]:
                if not isinstance(cell, str) or not cell.strip():
                    raise ValueError(
                        f"{source}: column {column!r} row {row} is {cell!r}; every text must be a non-empty string "
                        f"(drop or fill such rows, e.g. dataset.filter(lambda r: r[{column!r}]))"
                    )


def label_mapping(dataset: Dataset | IterableDataset, column: str) -> dict[Any, int]:
    """Raw label value -> contiguous class id (a ``ClassLabel`` already stores ids)."""
    feature = dataset.features.get(column) if dataset.features else None
    if isinstance(feature, ClassLabel):
        return {i: i for i in range(feature.num_classes)}
    if not isinstance(dataset, Dataset):
        raise ValueError(
            f"column {column!r} of a streaming data set must be a ClassLabel feature so class ids are known "
            "up front (cast it with dataset.cast_column)"
        )
    values = dataset.unique(column)
    if any(v is None for v in values):
        row = list(dataset[column]).index(None)
        raise ValueError(f"column {column!r} row {row} has no label (None)")
    return {value: i for i, value in enumerate(sorted(values, key=lambda v: (str(type(v)), v)))}


def is_list_column(dataset: Dataset | IterableDataset, column: str) -> bool:
    feature = dataset.features.get(column) if dataset.features else None
    return isinstance(feature, (Sequence, list)) or type(feature).__name__ == "List"
