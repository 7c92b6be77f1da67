"""From a run config and a data set to batches: roles, collator, sampler and loader.

Everything that turns the ``train`` section of a config (or a given ``datasets`` table) into what
the training loop iterates over lives here, so that the loop, the preflight and re-mining build
their data the same way::

    data = prepare_data(config, model, input_kinds(loss_cls), "info_nce")   # roles + collator
    loader, sampler = create_dataloader(data, config, model)
    data = rebuild(data, mined_table, config, model)                      # a re-mined table
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset, IterableDataset, concatenate_datasets
from torch.utils.data import DataLoader

from textdml.config import DataConfig, RunConfig
from textdml.data.collator import RoleCollator
from textdml.data.loading import check_text_columns, is_list_column, label_mapping, load_data
from textdml.data.roles import ColumnRoles, resolve_roles
from textdml.data.shuffle import SeededShuffleSampler
from textdml.losses.needs import UNDECLARED, loss_needs
from textdml.models.saving import is_image_text

# What a loss takes when its class declares no needs: every text input kind.
DEFAULT_INPUT_KINDS = UNDECLARED.input_kinds
TEXT_KINDS = DEFAULT_INPUT_KINDS


@dataclass
class TrainingData:
    dataset: Dataset | IterableDataset
    roles: ColumnRoles
    collator: RoleCollator
    label_ids: dict | None
    set_lengths: list[int] | None  # rows of each train set when there are several
    # What the roles were resolved for, so that a re-mined table is read the same way.
    input_kinds: tuple[str, ...] = DEFAULT_INPUT_KINDS
    loss_name: str = ""


def input_kinds(loss_cls: type) -> tuple[str, ...]:
    """The input kinds (pairs, triplets, labelled, ...) a loss takes, read from its ``needs`` (a class
    is enough: the layout is picked before the loss is built)."""
    return tuple(loss_needs(loss_cls).input_kinds)


def load_train_set(data: DataConfig) -> Dataset | IterableDataset:
    return load_data(data.path, split=data.split, name=data.name, data_files=data.data_files,
                     streaming=data.streaming, max_rows=data.max_rows, **data.options)


def resolve_train_set(dataset: Dataset | IterableDataset, data: DataConfig, loss_kinds: tuple[str, ...],
                      loss_name: str) -> ColumnRoles:
    columns = list(dataset.column_names or dataset.features or [])
    list_columns = [c for c in columns if is_list_column(dataset, c)]
    roles = resolve_roles(columns, loss_name, loss_kinds, data.columns, list_columns, source=f"train data {data.path!r}")
    check_text_columns(dataset, roles, source=f"train data {data.path!r}")
    return roles


def to_canonical_columns(dataset: Dataset, roles: ColumnRoles) -> Dataset:
    """Rename role columns to role names and drop the rest, so several train sets concatenate."""
    renames = {roles.anchor: "anchor"}
    if roles.positive:
        renames[roles.positive] = "positive"
    if roles.label:
        renames[roles.label] = "label"
    if roles.score:
        renames[roles.score] = "score"
    renames.update({column: f"negative_{i + 1}" for i, column in enumerate(roles.negatives)})
    dataset = dataset.select_columns(list(renames))
    return dataset.rename_columns({old: new for old, new in renames.items() if old != new})


def train_sets(config: RunConfig) -> list[DataConfig]:
    return config.train if isinstance(config.train, list) else [config.train]


def prepare_data(config: RunConfig, model: Any, loss_kinds: tuple[str, ...], loss_name: str,
                 dataset: Dataset | IterableDataset | None = None) -> TrainingData:
    """The training data of a text or an image-text model (see the two functions below)."""
    prepare = prepare_image_data if is_image_text(model) else prepare_training_data
    return prepare(config, model, loss_kinds, loss_name, dataset)


def prepare_training_data(config: RunConfig, embedder: Any, loss_kinds: tuple[str, ...], loss_name: str,
                          dataset: Dataset | IterableDataset | None = None) -> TrainingData:
    """Load (unless given), map columns to roles, check every text, and build the collator."""
    sets = train_sets(config)
    if dataset is not None:
        roles = resolve_train_set(dataset, sets[0], loss_kinds, loss_name)
        set_lengths = None
    elif len(sets) == 1:
        dataset = load_train_set(sets[0])
        roles = resolve_train_set(dataset, sets[0], loss_kinds, loss_name)
        set_lengths = None
    else:
        dataset, set_lengths = concatenate_train_sets(sets, loss_kinds, loss_name)
        roles = resolve_roles(dataset.column_names, loss_name, loss_kinds, {})
    label_ids = label_mapping(dataset, roles.label) if roles.kind == "labelled" else None
    collator = RoleCollator(embedder, roles, label_ids, bucket_rows=config.training.bucket_rows)
    return TrainingData(dataset, roles, collator, label_ids, set_lengths, tuple(loss_kinds), loss_name)


def concatenate_train_sets(sets: list[DataConfig], loss_kinds: tuple[str, ...],
                           loss_name: str) -> tuple[Dataset, list[int]]:
    """Several train sets as one table of role-named columns, and the rows of each."""
    parts: list[Dataset] = []
    kind = None
    for i, data in enumerate(sets):
        part = load_train_set(data)
        if not isinstance(part, Dataset):
            raise ValueError(f"train[{i}] ({data.path}): several train sets must be map-style (streaming=false)")
        roles = resolve_train_set(part, data, loss_kinds, loss_name)
        if kind is not None and roles.kind != kind:
            raise ValueError(f"train[{i}] ({data.path}) holds {roles.kind}, train[0] holds {kind}: "
                             "all train sets of one run must be of one input kind")
        kind = roles.kind
        parts.append(to_canonical_columns(part, roles))
    return concatenate_datasets(parts), [len(part) for part in parts]


def prepare_image_data(config: RunConfig, model: Any, loss_kinds: tuple[str, ...], loss_name: str,
                       dataset: Dataset | IterableDataset | None = None) -> TrainingData:
    """Image–text pairs or labelled images: roles by column name; images are decoded per batch."""
    from textdml.data.image_collator import ImageTextCollator
    from textdml.data.images import resolve_image_roles

    sets = train_sets(config)
    if len(sets) > 1:
        raise ValueError("several train sets are supported for text data only; concatenate the image data sets")
    dataset = dataset if dataset is not None else load_train_set(sets[0])
    roles = resolve_image_roles(list(dataset.column_names or dataset.features or []), loss_name, loss_kinds,
                                sets[0].columns)
    label_ids = label_mapping(dataset, roles.label) if roles.kind == "labelled_images" else None
    return TrainingData(dataset, roles, ImageTextCollator(model, roles, label_ids), label_ids, None,  # type: ignore[arg-type]
                        tuple(loss_kinds), loss_name)


def rebuild(data: TrainingData, table: Dataset, config: RunConfig, embedder: Any) -> TrainingData:
    """The training data of a re-mined ``table``, read for the same loss as ``data`` was."""
    return prepare_training_data(config, embedder, data.input_kinds, data.loss_name, table)


def create_batch_sampler(data: TrainingData, config: RunConfig, embedder: Any) -> Any:
    """The batch sampler the training config asks for (None: a plain shuffled sampler will do)."""
    t, dataset, roles = config.training, data.dataset, data.roles
    if data.set_lengths is not None:
        from textdml.data.batching import MultiDatasetBatchSampler

        return MultiDatasetBatchSampler(data.set_lengths, t.batch_size, strategy=t.multi_dataset_strategy,
                                        seed=t.seed, drop_last=True)
    if t.max_tokens_per_batch:
        if roles.kind not in TEXT_KINDS:
            raise ValueError("training.max_tokens_per_batch batches text by length; it does not apply to images")
        from textdml.data.batching import TokenBudgetBatchSampler

        lengths = row_token_lengths(dataset, roles, embedder)
        return TokenBudgetBatchSampler(lengths, t.max_tokens_per_batch, seed=t.seed, max_batch_size=t.batch_size)
    if t.sampler == "m_per_class":
        if roles.kind not in ("labelled", "labelled_images"):
            raise ValueError("training.sampler=m_per_class needs labelled data (anchor or image, and label)")
        from textdml.data.samplers import MPerClassSampler

        labels = [data.label_ids[v] for v in dataset[roles.label]]  # type: ignore[index]
        # One process's view of every batch: Accelerate hands the batches out to the processes.
        return MPerClassSampler(labels, m=t.m_per_class, batch_size=t.batch_size, seed=t.seed, num_replicas=1, rank=0)
    if t.sampler == "no_duplicates":
        from textdml.data.batching import NoDuplicatesBatchSampler

        return NoDuplicatesBatchSampler(dataset, t.batch_size, drop_last=True, seed=t.seed, columns=roles.text_columns)
    return None


def row_token_lengths(dataset: Dataset, roles: ColumnRoles, embedder: Any) -> list[int]:
    """Tokens per row: the longest text of the row (what it pads to), capped at max_seq_length."""
    lengths = [0] * len(dataset)
    for column in roles.text_columns:
        encoded = embedder.tokenizer(list(dataset[column]), truncation=True, max_length=embedder.max_seq_length)
        lengths = [max(a, len(ids)) for a, ids in zip(lengths, encoded["input_ids"])]
    return lengths


def create_dataloader(data: TrainingData, config: RunConfig, embedder: Any) -> tuple[DataLoader, Any]:
    """The loader of the training data, and its sampler (None for streaming data)."""
    t, dataset = config.training, data.dataset
    # The loader's own generator keeps its per-iterator seed draw off the global RNG, which dropout
    # uses: otherwise a resumed run would see different dropout masks than an unbroken one.
    generator = torch.Generator().manual_seed(t.seed)
    if isinstance(dataset, IterableDataset):
        # Full batches only, as for map-style data: every step has the same number of in-batch negatives.
        return DataLoader(dataset, batch_size=t.batch_size, collate_fn=data.collator, num_workers=t.num_workers,
                          drop_last=True, generator=generator), None
    batch_sampler = create_batch_sampler(data, config, embedder)
    if batch_sampler is not None:
        loader = DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=data.collator, num_workers=t.num_workers,
                            generator=generator)
        sampler = batch_sampler
    else:
        sampler = SeededShuffleSampler(len(dataset), t.seed) if t.sampler == "random" else None
        # Dropping the last partial batch keeps every step's number of in-batch negatives the same.
        loader = DataLoader(dataset, batch_size=t.batch_size, sampler=sampler, collate_fn=data.collator,
                            drop_last=True, num_workers=t.num_workers, generator=generator)
    if len(loader) == 0:
        raise ValueError(f"the training data has {len(dataset)} rows, fewer than one batch of {t.batch_size}; "
                         "lower training.batch_size")
    return loader, sampler
