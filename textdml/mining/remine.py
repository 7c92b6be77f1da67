"""Re-mining during training (ANCE-style): hard negatives refreshed with the model as it learns.

Negatives mined with the starting model grow easy as the model learns. Every
``training.remine_every`` steps the corpus is encoded again with the current weights, negatives
are mined again, and training goes on over the new table. Each table is saved under
``<output_dir>/mined/step-<S>``; the checkpoint records the step of the table in use, so a resumed
run finds the table of those weights (same fingerprint) and goes on with it.

With ``mine.collection`` each re-mine encodes the corpus into a new version of that collection
with the current weights (the alias moves to it), so the versions trace the run; a resumed run
reuses a version already written with its weights.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textdml.config import RunConfig
from textdml.data.pipeline import create_dataloader, rebuild
from textdml.training.callbacks import Callback

logger = logging.getLogger(__name__)


def mined_folder(config: RunConfig, step: int) -> Path:
    root = Path(config.mine.output_dir if config.mine and config.mine.output_dir else
                Path(config.training.output_dir) / "mined")
    return root if step == 0 else root / f"step-{step}"


def mined_versions(config: RunConfig) -> set[str]:
    """The collection versions this run's minings searched, from the settings beside each table.

    A re-mine replaces the live version by a new one with the current weights only when the live one
    is among these (the run's own earlier weights); any other model's version stays an identity
    error. Read from disk, so a resumed run knows the versions of the run it continues.
    """
    from textdml.mining.hard_negatives import SETTINGS_FILE

    root = mined_folder(config, 0)
    versions = set()
    for path in [root / SETTINGS_FILE, *root.glob(f"step-*/{SETTINGS_FILE}")]:
        if path.exists():
            collection = json.loads(path.read_text()).get("collection") or {}
            if collection.get("version"):
                versions.add(str(collection["version"]))
    return versions


class Remining(Callback):
    """When to re-mine, and the re-mine itself (mining with the current weights, timed).

    A callback of the loop: ``on_step_end`` re-mines when due and hands the loop a loader over the
    new table; ``on_train_begin`` gives a resumed run the table of its checkpoint's weights.

    Args:
        config: the run config (its ``mine`` section picks the negatives).
        every: re-mine every this many optimiser steps.
        show_progress_bar: a mining progress bar on the main process.
    """

    def __init__(self, config: RunConfig, every: int, show_progress_bar: bool = True):
        if config.mine is None:
            raise ValueError("training.remine_every needs a mine section (what to mine); add mine: {num_negatives: 1}")
        self.config = config
        self.every = every
        self.show_progress_bar = show_progress_bar

    def due(self, step: int, total_steps: int) -> bool:
        return step % self.every == 0 and step < total_steps

    def mine(self, embedder: Any, step: int, accelerator: Any) -> tuple[Any, float]:
        """The table mined with the current ``embedder`` at ``step`` (from its saved shards when it exists)."""
        from textdml.mining.run import mine_on_main_process

        start = time.perf_counter()
        table = mine_on_main_process(self.config, embedder, accelerator, mined_folder(self.config, step),
                                     self.show_progress_bar, own_versions=mined_versions(self.config))
        return table, time.perf_counter() - start

    def load(self, step: int) -> Any:
        """The table mined at ``step`` by an earlier run (a resumed run goes on with it)."""
        from textdml.mining.hard_negatives import RESULT_FILE
        from textdml.mining.run import read_mined

        folder = mined_folder(self.config, step)
        if not (folder / RESULT_FILE).exists():
            raise ValueError(f"the checkpoint trains on negatives mined at step {step}, but {folder / RESULT_FILE} "
                             "is missing; restore it, or resume from a checkpoint before that step")
        return read_mined(folder)

    def refresh(self, embedder: Any, step: int, accelerator: Any, rebuild: Callable[[Any], Any],
                evaluate: Callable[[], dict[str, float]] | None, log: Any) -> Any:
        """Re-mine at ``step``, log its cost and the metric at that point, return ``rebuild(table)``."""
        metrics = evaluate() if evaluate is not None else {}
        table, seconds = self.mine(embedder, step, accelerator)  # encoding restores the training mode itself
        record = {"step": step, "remine_seconds": round(seconds, 2), "remine_rows": table.num_rows,
                  **{f"remine_eval_{k}": v for k, v in metrics.items()}}
        log.write(record)
        logger.info("re-mined %d rows at step %d in %.1f s", table.num_rows, step, seconds)
        return rebuild(table)

    def on_train_begin(self, run: Any) -> None:
        if run.state.mined_at_step:  # resumed after a re-mine: the table of those weights
            self.train_on(run, self.load(run.state.mined_at_step))

    def on_step_end(self, run: Any) -> None:
        step = run.state.global_step
        if not self.due(step, run.total_steps):
            return
        evaluator, embedder = run.parts.evaluator, run.unwrapped.embedder
        evaluate = None if evaluator is None else functools.partial(evaluator, embedder)
        self.refresh(embedder, step, run.accelerator, functools.partial(self.train_on, run), evaluate, run.log)
        run.state.mined_at_step, run.state.batches_in_epoch = step, 0

    def train_on(self, run: Any, table: Any) -> None:
        """Hand the loop a loader over ``table``, read and fitted to the loss as the first table was."""
        parts = run.parts
        data = rebuild(parts.data, table, parts.config, parts.model)
        run.unwrapped.prepare_data(data, parts.config.training.seed)
        run.replace_loader(*create_dataloader(data, parts.config, parts.model))
