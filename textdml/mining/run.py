"""Mining as a run step: the recipe's train pairs and ``mine`` section -> a table with hard negatives."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textdml.config import DataConfig, MineConfig, RunConfig
from textdml.data.loading import load_data
from textdml.data.roles import resolve_roles

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)


def mining_settings(config: MineConfig) -> Any:
    from textdml.mining.hard_negatives import MiningSettings

    return MiningSettings(num_negatives=config.num_negatives, range_min=config.range_min, range_max=config.range_max,
                          absolute_margin=config.absolute_margin, relative_margin=config.relative_margin,
                          max_score=config.max_score, min_score=config.min_score,
                          sampling_strategy=config.sampling_strategy, seed=config.seed)


def load_corpus(data: DataConfig, column: str) -> list[str]:
    rows = load_data(data.path, split=data.split, name=data.name, data_files=data.data_files, max_rows=data.max_rows,
                     **data.options)
    if column not in rows.column_names:
        raise ValueError(f"mine.corpus {data.path!r} has no column {column!r} (columns: {rows.column_names}); "
                         "set mine.corpus_column")
    return [text for text in rows[column] if isinstance(text, str) and text.strip()]


def mine_for_run(config: RunConfig, model: Any, output_dir: str | Path | None = None,
                 show_progress_bar: bool = True) -> datasets.Dataset:
    """Mine the recipe's (single, map-style) train pairs with ``model``; the table is saved under ``output_dir``."""
    from textdml.mining.cross_encoder import CrossEncoderScorer
    from textdml.mining.hard_negatives import mine_hard_negatives

    mine = config.mine or MineConfig()
    if isinstance(config.train, list):
        raise ValueError("mining takes one train set: give train as a single data set")
    data = config.train
    pairs = load_data(data.path, split=data.split, name=data.name, data_files=data.data_files,
                      max_rows=data.max_rows, **data.options)
    roles = resolve_roles(list(pairs.column_names), "mining", ("pairs",), data.columns)
    corpus = load_corpus(mine.corpus, mine.corpus_column) if mine.corpus is not None else None
    out = Path(output_dir or mine.output_dir or Path(config.training.output_dir) / "mined")
    mined = mine_hard_negatives(
        pairs, model, anchor_column=roles.anchor, positive_column=roles.positive, corpus=corpus,  # type: ignore[arg-type]
        settings=mining_settings(mine), cross_encoder=CrossEncoderScorer(mine.cross_encoder) if mine.cross_encoder
        else None, output_dir=out, batch_size=mine.batch_size, show_progress_bar=show_progress_bar,
    )
    logger.info("mined %d rows with %d hard negatives each into %s", mined.num_rows, mine.num_negatives, out)
    return mined.remove_columns(["scores"])
