"""Diagnostics of a training run, as a callback: checks at the start, health at logging time,
the report at the end.

``train`` and ``Trainer`` register it; the loop calls it like any callback::

    on_train_begin  -> small-class warning, the brief preflight, the eval snapshot before training
    step_metrics    -> health_* metrics of the logged batch
    on_train_end    -> the eval snapshot after training and report.html (after final/ is saved)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from textdml.config import RunConfig
from textdml.diagnostics.classes import warn_small_classes
from textdml.diagnostics.health import HealthMonitor
from textdml.training.callbacks import Callback

logger = logging.getLogger(__name__)


class RunDiagnostics(Callback):
    """Diagnostics of one training run; bound to it by ``on_train_begin`` (or ``bind``).

    Attributes set by ``bind``:
        config: the run config (``training.preflight``, ``training.report``).
        task: the unwrapped task (embedder, loss, miner).
        data: the prepared ``TrainingData``.
        evaluator: the run's evaluator, whose data the eval snapshots sample (may be None).
        output_dir: the run folder.
        accelerator: the run's ``Accelerator``.
        sharded: FSDP / DeepSpeed: no single-process forward, so no embedding metrics.
    """

    def bind(self, config: RunConfig, task: nn.Module, data: Any, evaluator: Any, output_dir: Path,
             accelerator: Any, sharded: bool = False) -> None:
        self.config, self.task, self.data, self.evaluator = config, task, data, evaluator
        self.output_dir, self.accelerator, self.sharded = Path(output_dir), accelerator, sharded
        self.monitor = HealthMonitor(task, embed=not sharded)

    def on_train_begin(self, run: Any) -> None:
        self.bind(run.config, run.unwrapped, run.parts.data, run.parts.evaluator, run.output_dir, run.accelerator,
                  run.sharded)
        self.start()

    def step_metrics(self, run: Any, batch: dict[str, Any]) -> dict[str, float]:
        return self.health(batch, run.state.global_step, run.grad_norm)

    def on_train_end(self, run: Any) -> None:
        if run.accelerator.is_main_process and run.stop.signum is None:  # a stop request skips the report
            self.finish(run.final_model)

    def start(self) -> None:
        """Before the first step: warn about one-row classes, run the brief preflight, snapshot the eval set."""
        t = self.config.training
        loss_name = str(self.config.loss.get("name") or self.config.loss.get("target"))
        label = getattr(self.data.roles, "label", None) if self.data.roles.kind in ("labelled", "labelled_images") else None
        if self.accelerator.is_main_process:
            warn_small_classes(self.data.dataset, label, self.task.loss, loss_name, self.task.miner)
        if t.preflight and not self.sharded:
            self.run_preflight()
        if self.accelerator.is_main_process and t.report and not self.sharded:
            if not (self.output_dir / "diagnostics" / "eval_before.npz").exists():  # a resumed run keeps the first
                self.snapshot("before")

    def run_preflight(self) -> None:
        from textdml.diagnostics.preflight import PreflightError, log_report, run_preflight

        # Every process runs it (same data, same model): a loss that gathers across devices needs them all.
        report = run_preflight(self.config, model=self.task.embedder, data=self.data, loss=self.task.loss,
                               miner=self.task.miner, brief=True, num_processes=self.accelerator.num_processes)
        if self.accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            log_report(report, str(report.save(self.output_dir / "preflight.json")))
        if report.errors:
            raise PreflightError(report.error_message())

    def snapshot(self, when: str, model: Any = None) -> None:
        from textdml.diagnostics.snapshot import save_eval_snapshot

        save_eval_snapshot(model or self.task.embedder, self.evaluator, self.output_dir, when)

    def health(self, batch: dict[str, Any], step: int, grad_norm: torch.Tensor | float | None = None) -> dict[str, float]:
        """``health_*`` metrics of the current batch, for the logging record."""
        try:
            return self.monitor.measure(batch, step, grad_norm)
        except Exception as err:  # noqa: BLE001 - a diagnostic never stops training
            logger.warning("health metrics skipped at step %d (%s: %s)", step, type(err).__name__, err)
            return {}

    def finish(self, model: Any) -> None:
        """On the main process after the final save: the eval snapshot after training and the report."""
        if not self.config.training.report:
            return
        from textdml.diagnostics.report import write_run_report

        if not self.sharded:
            self.snapshot("after", model)
        write_run_report(self.output_dir)
