"""Mining as a run step: the recipe's train pairs and ``mine`` section -> a table with hard negatives."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textdml.config import DataConfig, MineConfig, RunConfig
from textdml.data.loading import load_data
from textdml.data.roles import resolve_roles
from textdml.mining.settings import MiningSettings

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)


def load_corpus(data: DataConfig, column: str) -> list[str]:
    rows = load_data(data.path, split=data.split, name=data.name, data_files=data.data_files, max_rows=data.max_rows,
                     **data.options)
    if column not in rows.column_names:
        raise ValueError(f"mine.corpus {data.path!r} has no column {column!r} (columns: {rows.column_names}); "
                         "set mine.corpus_column")
    return [text for text in rows[column] if isinstance(text, str) and text.strip()]


def read_mined(folder: Path) -> datasets.Dataset:
    """A saved mined table, as training reads it (without the ``scores`` column)."""
    from datasets import Dataset

    from textdml.mining.hard_negatives import RESULT_FILE

    table = Dataset.from_parquet(str(folder / RESULT_FILE))
    return table.remove_columns([c for c in ("scores",) if c in table.column_names])


def mine_on_main_process(config: RunConfig, model: Any, accelerator: Any, output_dir: Path,
                         show_progress_bar: bool = True, own_versions: Collection[str] = ()) -> datasets.Dataset:
    """Mine on the main process first; the other processes then get the same table.

    In-memory search: they mine too and find every shard saved (same inputs, same fingerprint).
    Through a collection they read the finished table instead: a Qdrant Edge shard opens in one
    process at a time, and they would all open it together.
    """
    with accelerator.main_process_first():
        if config.mine is not None and config.mine.collection is not None and not accelerator.is_main_process:
            return read_mined(output_dir)
        return mine_for_run(config, model, output_dir, show_progress_bar=show_progress_bar and accelerator.is_main_process,
                            own_versions=own_versions)


def mine_for_run(config: RunConfig, model: Any, output_dir: str | Path | None = None,
                 show_progress_bar: bool = True, force: bool = False,
                 own_versions: Collection[str] = ()) -> datasets.Dataset:
    """Mine the recipe's (single, map-style) train pairs with ``model``; the table is saved under ``output_dir``.

    With ``mine.collection`` the candidates come from that collection of the ``index`` section
    (``force`` or ``index.force``: although another model indexed it; ``own_versions``: versions
    earlier minings of this run searched, which a re-mine replaces by a new version).
    """
    from textdml.mining.cross_encoder import CrossEncoderScorer
    from textdml.mining.hard_negatives import mine_hard_negatives, mining_documents

    mine = config.mine or MineConfig()
    if isinstance(config.train, list):
        raise ValueError("mining takes one train set: give train as a single data set")
    data = config.train
    pairs = load_data(data.path, split=data.split, name=data.name, data_files=data.data_files,
                      max_rows=data.max_rows, **data.options)
    roles = resolve_roles(list(pairs.column_names), "mining", ("pairs",), data.columns,
                          source=f"train data {data.path!r}")
    corpus = load_corpus(mine.corpus, mine.corpus_column) if mine.corpus is not None else None
    out = Path(output_dir or mine.output_dir or Path(config.training.output_dir) / "mined")
    cross_encoder = CrossEncoderScorer(mine.cross_encoder) if mine.cross_encoder else None
    with contextlib.ExitStack() as stack:  # closes the index after mining
        searcher = None
        if mine.collection is not None:
            documents = mining_documents(pairs, anchor_column=roles.anchor, positive_column=roles.positive,  # type: ignore[arg-type]
                                         corpus=corpus)
            searcher = open_searcher(config, model, documents, stack, force=force, own_versions=own_versions,
                                     show_progress_bar=show_progress_bar)
        mined = mine_hard_negatives(
            pairs, model, anchor_column=roles.anchor, positive_column=roles.positive, corpus=corpus,  # type: ignore[arg-type]
            settings=MiningSettings.from_config(mine), cross_encoder=cross_encoder, searcher=searcher, output_dir=out,
            batch_size=mine.batch_size, show_progress_bar=show_progress_bar,
        )
    logger.info("mined %d rows with %d hard negatives each into %s", mined.num_rows, mine.num_negatives, out)
    return mined.remove_columns(["scores"])


def open_searcher(config: RunConfig, model: Any, documents: list[str], stack: contextlib.ExitStack, *,
                  force: bool = False, own_versions: Collection[str] = (), show_progress_bar: bool = True) -> Any:
    """The run's collection management: ``mine.collection`` of the ``index`` section, opened (created,
    reused or re-encoded, see :mod:`textdml.mining.collection_search`) over the task's ``documents``.

    The engine stays open until ``stack`` closes. Exact or HNSW search follows ``mine.exact``; a
    version written for mining gets the index section's HNSW / quantization settings.
    """
    from textdml.index.qdrant import collection_options, fusion_settings, open_index, search_options, sparse_source
    from textdml.mining.collection_search import open_collection_searcher

    mine = config.mine
    assert mine is not None and mine.collection is not None
    engine = stack.enter_context(open_index(config.index))
    return open_collection_searcher(
        model, engine, mine.collection, documents, force=force or config.index.force, own_versions=own_versions,
        search_options=dataclasses.replace(search_options(config.index), exact=mine.exact),
        index_options=collection_options(config.index), batch_size=mine.batch_size,
        show_progress_bar=show_progress_bar, mode=mine.mode, fusion=fusion_settings(config.index),
        sparse=sparse_source(config.index))
