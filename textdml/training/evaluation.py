"""Evaluation during training and the metrics log: ``eval_*`` records, ``best/``, ``metrics.jsonl``."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from textdml.console import format_evaluation, write_line
from textdml.models.embedder import Embedder
from textdml.models.saving import save_model
from textdml.training import run_folder
from textdml.training.accelerator import is_sharded
from textdml.training.callbacks import CallbackList
from textdml.training.checkpoint import TrainerState, guard_write

logger = logging.getLogger(__name__)

Evaluator = Callable[[Embedder], dict[str, float]]


def check_best_metric(metric: str | None, evaluator: Evaluator | None) -> None:
    """A ``metric_for_best_model`` the evaluator does not compute fails now, not at the first
    evaluation, which may come after hours of training. textdml's evaluators list their
    ``metric_names``; any other evaluator is checked at its first evaluation."""
    names = getattr(evaluator, "metric_names", None)
    if metric is not None and names is not None and metric not in names:
        raise ValueError(unknown_metric_message(metric, names))


def unknown_metric_message(metric: str, names: Any) -> str:
    return (f"training.metric_for_best_model {metric!r} is not among the evaluation metrics {sorted(names)}: "
            "pick one of them (or null for the evaluator's primary metric)")


def run_evaluation(evaluator: Evaluator, embedder: Embedder, state: TrainerState, log: MetricLog, best_dir: Path,
                   metric: str | None, accelerator: Accelerator, keep_adapter: bool = False,
                   track_best: bool = True) -> dict[str, float]:
    """Evaluate, log ``eval_*`` at the current step, and keep ``best/`` (unless ``track_best`` is false:
    the starting model of ``eval_on_start`` is not something the training produced)."""
    if is_sharded(accelerator):
        # A sharded model needs every process for each forward; evaluate the saved model instead.
        logger.warning("evaluation during training is skipped under FSDP / DeepSpeed: run `textdml eval` on the saved model")
        return {}
    if not accelerator.is_main_process:
        accelerator.wait_for_everyone()
        return {}
    results = evaluator(embedder)
    log.write({"step": state.global_step, **{f"eval_{k}": v for k, v in results.items()}}, state)
    metric = metric or getattr(evaluator, "primary_metric", None)
    write_line(format_evaluation(state.global_step, results, metric))
    log.callbacks.on_evaluate(results, state)  # after the line: what a callback prints comes next
    if metric is not None and track_best:
        if metric not in results:
            raise KeyError(unknown_metric_message(metric, results))
        if state.best_metric is None or results[metric] > state.best_metric:
            state.best_metric, state.best_step = results[metric], state.global_step
            with guard_write(best_dir, "best model", best_dir.parent), run_folder.atomic_folder(best_dir) as folder:
                save_model(embedder, folder, keep_adapter=keep_adapter)
            log.saved(best_dir, "best", state)
    accelerator.wait_for_everyone()
    return results


class MetricLog:
    """Metrics to ``metrics.jsonl``, to the Accelerate trackers (``training.report_to``) and to callbacks."""

    def __init__(self, output_dir: Path, enabled: bool, accelerator: Accelerator | None = None,
                 callbacks: CallbackList | None = None):
        self.enabled = enabled
        self.path = output_dir / "metrics.jsonl"
        self.records: list[dict[str, Any]] = []
        self.accelerator = accelerator
        self.callbacks = callbacks or CallbackList()

    def write(self, record: dict[str, Any], state: TrainerState | None = None) -> None:
        from textdml.training.trackers import log_to_trackers, numeric_values

        self.records.append(record)
        if not self.enabled:
            return
        try:
            with open(self.path, "a") as file:
                file.write(json.dumps(record) + "\n")
        except OSError as err:  # name the file: a full disk reports no path
            raise OSError(err.errno, err.strerror, str(self.path)) from err
        if self.accelerator is not None and self.accelerator.log_with:
            log_to_trackers(self.accelerator, numeric_values(record), record["step"])
        self.callbacks.on_log(record, state or TrainerState(global_step=record["step"]))

    def saved(self, path: Path, kind: str, state: TrainerState) -> None:
        if self.enabled:
            self.callbacks.on_save(path, kind, state)  # type: ignore[arg-type]
