"""The training loop (Accelerate; one CPU to many GPUs): ``fit(parts, accelerator, callbacks)``.

``textdml.training.setup.build_run`` builds what a run trains (model, data, loss, task, loader);
``fit`` trains it, with resume, logging, evaluation, checkpoints and clean stops on a signal, in
the shape of accelerate's ``examples/nlp_example.py``. What a run does besides training comes as
callbacks that ``train`` registers: diagnostics, re-mining, and the final save (``finish.py``).
This module imports no data, mining, diagnostics or hub module.
"""

from __future__ import annotations

import functools
import importlib
import logging
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from datasets import IterableDataset
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from textdml.config import RunConfig
from textdml.console import own_bars_shown
from textdml.models.saving import is_image_text
from textdml.training import run_folder
from textdml.training.accelerator import check_dispatch, is_sharded, plan_grad_cache
from textdml.training.callbacks import CallbackList
from textdml.training.checkpoint import TrainerState, save_checkpoint
from textdml.training.evaluation import MetricLog, run_evaluation
from textdml.training.optim import create_optimizer
from textdml.training.run_stamp import RunStamp, resume
from textdml.training.signals import StopRequest, TrainingInterrupted
from textdml.training.tasks import own_mini_batch_size

logger = logging.getLogger(__name__)


class NonFiniteLossError(ValueError, RuntimeError):
    """The loss became NaN or infinite; training stopped before the bad step changed any weight."""


@dataclass
class TrainResult:
    final_model: Path
    best_model: Path | None
    global_step: int
    metrics: list[dict[str, Any]] = field(default_factory=list)
    train_runtime: float = 0.0  # seconds spent in training steps (no loading, evaluation or saving)


@dataclass
class FitRun:
    """A run being trained: what the loop's steps and the callbacks share."""

    parts: Any  # textdml.training.setup.RunParts
    accelerator: Accelerator
    callbacks: CallbackList
    task: torch.nn.Module  # prepared (wrapped for DDP / FSDP)
    optimizer: Any
    scheduler: Any
    dataloader: Any
    sampler: Any
    state: TrainerState
    log: MetricLog
    total_steps: int
    mini_batch_size: int | None  # GradCache (None: a plain step)
    config_dict: dict[str, Any]
    stop: StopRequest = field(default_factory=StopRequest)
    progress: Any = None
    in_step: bool = False  # weights and counters disagree: no checkpoint may be taken
    loader_replaced: bool = False
    step_seconds: float = 0.0  # training time only: evaluation and checkpoints are not counted
    step_start: float = 0.0
    examples_since: int = 0
    clock: float = 0.0
    grad_norm: Any = None
    final_model: Any = None  # the model saved to final/ (set by the final save)
    unwrapped: Any = None  # the task without its DDP / compile wrappers

    def __post_init__(self) -> None:
        self.unwrapped = self.accelerator.unwrap_model(self.task)

    @property
    def config(self) -> RunConfig:
        return self.parts.config

    @property
    def output_dir(self) -> Path:
        return Path(self.config.training.output_dir)

    @property
    def best_dir(self) -> Path:
        return self.output_dir / "best"

    @property
    def sharded(self) -> bool:
        return is_sharded(self.accelerator)

    def replace_loader(self, loader: Any, sampler: Any) -> None:
        """Train on from a new loader (a re-mined table); the current epoch pass ends after this step."""
        self.dataloader, self.sampler = self.accelerator.prepare(loader), sampler
        self.loader_replaced = True

    def evaluate(self, track_best: bool = True) -> dict[str, float]:
        t = self.config.training
        return run_evaluation(self.parts.evaluator, self.unwrapped.embedder, self.state, self.log, self.best_dir,
                              t.metric_for_best_model, self.accelerator, t.save_adapter, track_best=track_best)


def fit(parts: Any, accelerator: Accelerator, callbacks: CallbackList) -> TrainResult:
    """Train ``parts`` (see ``build_run``) to ``training.max_steps`` or ``epochs``; returns where the
    final (and best) model were saved. ``callbacks`` include the final save (``FinishRun``)."""
    run = start_fit(parts, accelerator, callbacks)
    callbacks.on_train_begin(run)  # diagnostics (preflight), a resumed re-mining's table
    t = run.config.training
    if parts.evaluator is not None and t.eval_on_start and run.state.global_step == 0:  # a resumed run has its step 0
        with own_bars_shown(t.show_progress_bar and accelerator.is_main_process):  # no training bar yet
            run.evaluate(track_best=False)  # the starting model is not something the training produced
    run.progress = tqdm(total=run.total_steps, initial=run.state.global_step, desc="Training", dynamic_ncols=True,
                        disable=not (t.show_progress_bar and accelerator.is_main_process))
    run.clock = time.perf_counter()
    # Signals only set a flag, checked after each optimiser step (see signals.py).
    try:
        run.stop.__enter__()
        train_epochs(run)
    except KeyboardInterrupt as err:
        stop_with_checkpoint(run, err)
    except BaseException:
        run.stop.restore()
        raise
    run.progress.close()
    return end_fit(run)


def start_fit(parts: Any, accelerator: Accelerator, callbacks: CallbackList) -> FitRun:
    """Set-up: grad cache, optimiser and schedule, ``accelerator.prepare``, resume, run files, metrics log."""
    from textdml.training import run_info, trackers

    config, t = parts.config, parts.config.training
    run_info.log_parameter_counts(parts.model)
    check_dispatch(accelerator, parts.data.dataset)
    streaming = isinstance(parts.data.dataset, IterableDataset)
    if t.max_steps is None and streaming:
        raise ValueError("a streaming data set has no length: set training.max_steps")
    # A cached loss (cached_gist_embed) brings its own mini-batch size: GradCache without the config flag.
    mini_batch_size = plan_grad_cache(config, parts.model, accelerator) if t.grad_cache else own_mini_batch_size(
        parts.task)
    if t.compile:
        parts.model.compile()  # in place: parameter names (and saved files) are unchanged
    total_steps = t.max_steps or t.epochs * math.ceil(len(parts.dataloader) / t.gradient_accumulation_steps)
    optimizer = create_optimizer(parts.task, t.learning_rate, t.weight_decay, config.loss.get("lr"),
                                 {"image_lr": t.image_lr, "text_lr": t.text_lr, "logit_scale_lr": t.logit_scale_lr}
                                 if is_image_text(parts.model) else None)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(t.warmup_ratio * total_steps), total_steps)
    # The schedule counts optimiser steps. Accelerate's prepared scheduler would step once per
    # process per step (it assumes a schedule in single-process batches), so it is kept out of
    # prepare, stepped by hand after each optimiser step, and registered for checkpoints.
    task, optimizer, dataloader = accelerator.prepare(parts.task, optimizer, parts.dataloader)
    accelerator.register_for_checkpointing(scheduler)
    stamp = RunStamp.of(config)
    state, checkpoint = resume(accelerator, stamp, t)
    if accelerator.is_main_process:
        run_folder.write_run_files(Path(t.output_dir), stamp.config_dict, stamp.fingerprint)
    if accelerator.log_with:
        accelerator.init_trackers(t.tracker_project, trackers.flat_hyperparameters(stamp.config_dict),
                                  trackers.init_kwargs([str(x) for x in accelerator.log_with], Path(t.output_dir).name,
                                                       t.tracker_kwargs, state.global_step if checkpoint else None))
    log = MetricLog(Path(t.output_dir), accelerator.is_main_process, accelerator, callbacks)
    if accelerator.is_main_process:  # a resumed run logs its steps after the checkpoint anew
        log.records = run_folder.truncate_metrics(log.path, state.global_step)
    return FitRun(parts, accelerator, callbacks, task, optimizer, scheduler, dataloader, parts.sampler, state, log,
                  total_steps, mini_batch_size, stamp.config_dict)


def train_epochs(run: FitRun) -> None:
    """Epochs (passes over the loader) until the last step; a resumed epoch skips what it has seen."""
    state, t = run.state, run.config.training
    while state.global_step < run.total_steps:
        position = state.batches_in_epoch
        fresh_epoch = position == 0
        for batch in epoch_batches(run):
            position += 1
            output = train_step(run, batch)
            if not run.accelerator.sync_gradients:
                continue
            state.global_step += 1
            state.batches_in_epoch = position
            run.in_step = False
            if after_step(run, batch, output):
                break
        else:
            if fresh_epoch and position == 0:  # a stream with no full batch would loop forever
                raise ValueError(f"the training data gave no full batch of {t.batch_size} rows in epoch "
                                 f"{state.epoch}; lower training.batch_size or check the data")
            state.epoch += 1
            state.batches_in_epoch = 0


def epoch_batches(run: FitRun) -> Any:
    """The loader for the current epoch, past the batches a resumed run has already trained on."""
    state, batches = run.state, run.dataloader
    if state.batches_in_epoch:
        batches = run.accelerator.skip_first_batches(run.dataloader, state.batches_in_epoch)
    # Accelerate's loaders set the sampler's epoch from their own iteration count, which a
    # fresh (resumed or skipping) loader starts at 0: tell them the real epoch. A batch
    # sampler wrapped for sharding is not reached that way, so it is told directly too.
    batches.set_epoch(state.epoch)
    if hasattr(run.sampler, "set_epoch"):
        run.sampler.set_epoch(state.epoch)
    run.loader_replaced = False
    run.step_start = time.perf_counter()
    return batches


def train_step(run: FitRun, batch: dict[str, Any]) -> Any:
    """Forward, backward and (at the end of an accumulation) the optimiser step of one batch."""
    accelerator, task, t = run.accelerator, run.task, run.config.training
    run.in_step = True
    with accelerator.accumulate(task):
        if run.mini_batch_size is not None:  # GradCache: backward happens inside
            output = run.unwrapped.cached_step(batch, run.mini_batch_size, embed=task, backward=accelerator.backward,
                                               no_sync=functools.partial(accelerator.no_sync, task))
            check_finite(output.loss, run.state)
        else:
            output = task(batch)
            check_finite(output.loss, run.state)
            accelerator.backward(output.loss)
        if accelerator.sync_gradients and t.max_grad_norm:
            run.grad_norm = accelerator.clip_grad_norm_(task.parameters(), t.max_grad_norm)
        run.optimizer.step()
        if accelerator.sync_gradients:
            run.scheduler.step()
        run.optimizer.zero_grad()
    run.examples_since += output.num_examples * accelerator.num_processes
    return output


def after_step(run: FitRun, batch: dict[str, Any], output: Any) -> bool:
    """Logging, callbacks (re-mining), evaluation, checkpoint and stop check after an optimiser step;
    True ends the current pass over the loader (the last step, or a new loader)."""
    state, t = run.state, run.config.training
    run.step_seconds += time.perf_counter() - run.step_start
    run.progress.update(1)
    if state.global_step % t.logging_steps == 0 or state.global_step == run.total_steps:
        log_step(run, batch, output)
    run.callbacks.on_step_end(run)  # before this step's checkpoint, which then resumes on a re-mined table
    if run.parts.evaluator is not None and t.eval_steps and state.global_step % t.eval_steps == 0:
        run.evaluate()
    if t.save_steps and state.global_step % t.save_steps == 0:
        path = save_checkpoint(run.accelerator, run.output_dir, state, t.save_total_limit, config_dict=run.config_dict)
        run.log.saved(path, "checkpoint", state)
    if run.stop.requested(run.accelerator):
        raise KeyboardInterrupt
    run.step_start = time.perf_counter()
    return state.global_step >= run.total_steps or run.loader_replaced


def log_step(run: FitRun, batch: dict[str, Any], output: Any) -> None:
    elapsed = time.perf_counter() - run.clock
    record = {"step": run.state.global_step, "epoch": run.state.epoch, "loss": round(output.loss.item(), 6),
              "lr": run.scheduler.get_last_lr()[0], "examples_per_s": round(run.examples_since / elapsed, 2)}
    record |= run.callbacks.step_metrics(run, batch)  # health metrics of the batch
    run.progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}",
                             pairs_s=f"{record['examples_per_s']:.1f}")
    run.log.write(record, run.state)
    run.examples_since, run.clock = 0, time.perf_counter()


def stop_with_checkpoint(run: FitRun, err: KeyboardInterrupt) -> None:
    """A stop request (or Ctrl-C) between steps: save a checkpoint and raise ``TrainingInterrupted``."""
    run.progress.close()
    run.stop.restore()
    signum = run.stop.signum or 2  # SIGINT
    if run.stop.forced or (run.in_step and run.stop.signum is None):  # a step cut short: weights and counters disagree
        logger.warning("interrupted inside step %d: no checkpoint saved (it would not match the weights); the "
                       "last saved checkpoint is intact", run.state.global_step + 1)
        raise err
    path = save_checkpoint(run.accelerator, run.output_dir, run.state, None, config_dict=run.config_dict)
    message = (f"interrupted at step {run.state.global_step}: saved {path}; resume with "
               "training.resume_from_checkpoint=latest")
    logger.warning(message)
    run.log.saved(path, "checkpoint", run.state)
    run.accelerator.end_training()
    raise TrainingInterrupted(signum, path, message) from err


def end_fit(run: FitRun) -> TrainResult:
    """After the last step: ``on_train_end`` (the final save, report, push) under the signal handler.

    A first Ctrl-C / SIGTERM lets final/ finish (the whole model, seconds away) and then stops,
    skipping the push and the report; a second stops at once, leaving the previous final/ whole.
    """
    accelerator, t = run.accelerator, run.config.training
    run.stop.notice = "finishing the final model, then stopping"
    try:
        run.callbacks.on_train_end(run)
        accelerator.wait_for_everyone()
        signum = run.stop.requested(accelerator)
    finally:
        run.stop.restore()
    final_dir = run.output_dir / "final"
    if signum is not None:
        message = (f"{signal.Signals(signum).name} received while saving the final model: {final_dir} is complete; "
                   "stopped before " + ("the push and " if t.push_to_hub else "") + "the run report")
        logger.warning(message)
        accelerator.end_training()
        raise TrainingInterrupted(signum, None, message)
    accelerator.end_training()
    return TrainResult(final_dir, run.best_dir if run.best_dir.exists() else None, run.state.global_step,
                       run.log.records, run.step_seconds)


def check_finite(loss: torch.Tensor, state: TrainerState) -> None:
    if not torch.isfinite(loss.detach()):
        raise NonFiniteLossError(
            f"the loss is {loss.item()} at step {state.global_step + 1} (epoch {state.epoch}); training stopped "
            "before this step changed any weight and the last checkpoint is intact. Lower "
            "training.learning_rate, raise the loss temperature, or use mixed_precision=no."
        )


# Names that lived here before the data pipeline, the run set-up, the final save, the devices,
# evaluation and the run stamp moved to modules of their own:
# still importable from here for one release, loaded on first use.
MOVED = {
    **dict.fromkeys(["TrainingData", "load_train_set", "resolve_train_set", "to_canonical_columns",
                     "prepare_training_data", "prepare_image_data", "create_batch_sampler", "row_token_lengths",
                     "create_dataloader", "check_text_columns", "SeededShuffleSampler"], "textdml.data.pipeline"),
    **dict.fromkeys(["loss_input_kinds", "mine_before_training", "build_run", "RunParts"], "textdml.training.setup"),
    **dict.fromkeys(["train", "run_training"], "textdml.training.trainer"),
    **dict.fromkeys(["check_push_target", "gathered_embedder", "FinishRun"], "textdml.training.finish"),
    "is_dual_encoder": "textdml.models.saving",
    **dict.fromkeys(["resolve_mixed_precision", "create_accelerator", "check_dispatch", "check_process_group",
                     "is_sharded", "plan_grad_cache"], "textdml.training.accelerator"),
    **dict.fromkeys(["Evaluator", "MetricLog", "run_evaluation", "check_best_metric", "unknown_metric_message"],
                    "textdml.training.evaluation"),
    **dict.fromkeys(["RunStamp", "stamp_run_folder", "resume"], "textdml.training.run_stamp"),
}


def __getattr__(name: str) -> Any:
    if name == "is_dual_encoder":
        return importlib.import_module(MOVED[name]).is_image_text
    if name in MOVED:
        return getattr(importlib.import_module(MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
