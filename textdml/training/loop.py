"""The training loop (Accelerate; one CPU to many GPUs), with evaluation, checkpoints and resume."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import Dataset, IterableDataset
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from textdml.config import RunConfig, to_dict
from textdml.data.collator import RoleCollator
from textdml.data.loading import check_text_columns, is_list_column, label_mapping, load_data
from textdml.data.roles import ColumnRoles, resolve_roles
from textdml.data.shuffle import SeededShuffleSampler
from textdml.models.embedder import Embedder
from textdml.training.build import build_loss, build_miner, create_embedder
from textdml.training.checkpoint import TrainerState, load_checkpoint, resolve_checkpoint, save_checkpoint
from textdml.training.optim import create_optimizer
from textdml.training.task import EmbeddingTask

logger = logging.getLogger(__name__)

Evaluator = Callable[[Embedder], dict[str, float]]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped before the bad step changed any weight."""


@dataclass
class TrainResult:
    final_model: Path
    best_model: Path | None
    global_step: int
    metrics: list[dict[str, Any]] = field(default_factory=list)
    train_runtime: float = 0.0  # seconds spent in training steps (no loading, evaluation or saving)


def prepare_training_data(config: RunConfig, embedder: Embedder, loss_input_kinds: tuple[str, ...], loss_name: str,
                          dataset: Dataset | IterableDataset | None = None):
    """Load (unless given), map columns to roles, check every text, and build the collator."""
    data = config.train
    if dataset is None:
        dataset = load_data(data.path, split=data.split, name=data.name, data_files=data.data_files,
                            streaming=data.streaming, max_rows=data.max_rows, **data.options)
    columns = list(dataset.column_names or dataset.features or [])
    list_columns = [c for c in columns if is_list_column(dataset, c)]
    roles = resolve_roles(columns, loss_name, loss_input_kinds, data.columns, list_columns)
    check_text_columns(dataset, roles, source=f"train data {data.path!r}")
    label_ids = label_mapping(dataset, roles.label) if roles.kind == "labelled" else None
    return dataset, roles, RoleCollator(embedder.tokenize, roles, label_ids), label_ids


def create_dataloader(dataset: Dataset | IterableDataset, roles: ColumnRoles, collator: RoleCollator,
                      config: RunConfig, label_ids: dict | None) -> tuple[DataLoader, Any]:
    t = config.training
    if isinstance(dataset, IterableDataset):
        return DataLoader(dataset, batch_size=t.batch_size, collate_fn=collator, num_workers=t.num_workers), None
    if t.sampler == "m_per_class":
        if roles.kind != "labelled":
            raise ValueError("training.sampler=m_per_class needs labelled data (anchor, label)")
        from textdml.data.samplers import MPerClassSampler

        labels = [label_ids[v] for v in dataset[roles.label]]  # type: ignore[index]
        batch_sampler = MPerClassSampler(labels, m=t.m_per_class, batch_size=t.batch_size, seed=t.seed)
        loader = DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=collator, num_workers=t.num_workers,
                            generator=torch.Generator().manual_seed(t.seed))
        return loader, batch_sampler
    sampler = SeededShuffleSampler(len(dataset), t.seed) if t.sampler == "random" else None
    # Dropping the last partial batch keeps every step's number of in-batch negatives the same. The
    # loader's own generator keeps its per-iterator seed draw off the global RNG, which dropout uses:
    # otherwise a resumed run would see different dropout masks than an unbroken one.
    loader = DataLoader(dataset, batch_size=t.batch_size, sampler=sampler, collate_fn=collator, drop_last=True,
                        num_workers=t.num_workers, generator=torch.Generator().manual_seed(t.seed))
    if len(loader) == 0:
        raise ValueError(f"the training data has {len(dataset)} rows, fewer than one batch of {t.batch_size}; "
                         "lower training.batch_size")
    return loader, sampler


def resolve_mixed_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def train(
    config: RunConfig,
    *,
    evaluator: Evaluator | None = None,
    train_dataset: Dataset | IterableDataset | None = None,
    embedder: Embedder | None = None,
    accelerator: Accelerator | None = None,
) -> TrainResult:
    """Train the embedder of ``config``; returns where the final (and best) model were saved."""
    t = config.training
    output_dir = Path(t.output_dir)
    accelerator = accelerator or Accelerator(mixed_precision=resolve_mixed_precision(t.mixed_precision),
                                             gradient_accumulation_steps=t.gradient_accumulation_steps)
    set_seed(t.seed)
    embedder = embedder or create_embedder(config.model)
    loss_name = config.loss.get("name") or config.loss.get("target")
    loss_cls_kinds = loss_input_kinds(config.loss)
    dataset, roles, collator, label_ids = prepare_training_data(config, embedder, loss_cls_kinds, loss_name, train_dataset)
    loss = build_loss(config.loss, embedding_size=embedder.embedding_dim,
                      num_classes=len(label_ids) if label_ids else None)
    task = EmbeddingTask(embedder, loss, build_miner(config.miner))
    dataloader, sampler = create_dataloader(dataset, roles, collator, config, label_ids)
    steps_per_epoch = None if sampler is None and isinstance(dataset, IterableDataset) else math.ceil(
        len(dataloader) / t.gradient_accumulation_steps)
    if t.max_steps is None and steps_per_epoch is None:
        raise ValueError("a streaming data set has no length: set training.max_steps")
    total_steps = t.max_steps or t.epochs * steps_per_epoch  # type: ignore[operator]
    optimizer = create_optimizer(task, t.learning_rate, t.weight_decay, config.loss.get("lr"))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(t.warmup_ratio * total_steps), total_steps)
    task, optimizer, dataloader, scheduler = accelerator.prepare(task, optimizer, dataloader, scheduler)

    state = TrainerState()
    checkpoint = resolve_checkpoint(output_dir, t.resume_from_checkpoint)
    if checkpoint is not None:
        state = load_checkpoint(accelerator, checkpoint)
        logger.info("resumed from %s at step %d", checkpoint, state.global_step)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "run_config.json").write_text(json.dumps(to_dict(config), indent=2, default=str))
    log = MetricLog(output_dir, accelerator.is_main_process)
    unwrapped = accelerator.unwrap_model(task)
    best_dir = output_dir / "best"
    progress = tqdm(total=total_steps, initial=state.global_step, desc="Training", dynamic_ncols=True,
                    disable=not (t.show_progress_bar and accelerator.is_main_process))
    examples_since, clock = 0, time.perf_counter()
    step_seconds = 0.0  # training time only: evaluation and checkpoints are not counted
    try:
        while state.global_step < total_steps:
            batches = dataloader
            if state.batches_in_epoch:
                batches = accelerator.skip_first_batches(dataloader, state.batches_in_epoch)
            # Accelerate's loaders set the sampler's epoch from their own iteration count, which a
            # fresh (resumed or skipping) loader starts at 0: tell them the real epoch.
            batches.set_epoch(state.epoch)
            position = state.batches_in_epoch
            step_start = time.perf_counter()
            for batch in batches:
                position += 1
                with accelerator.accumulate(task):
                    output = task(batch)
                    if not torch.isfinite(output.loss.detach()):
                        raise NonFiniteLossError(
                            f"the loss is {output.loss.item()} at step {state.global_step + 1} (epoch {state.epoch}); "
                            "training stopped before this step changed any weight and the last checkpoint is intact. "
                            "Lower training.learning_rate, raise the loss temperature, or use mixed_precision=no."
                        )
                    accelerator.backward(output.loss)
                    if accelerator.sync_gradients and t.max_grad_norm:
                        accelerator.clip_grad_norm_(task.parameters(), t.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                examples_since += output.num_examples * accelerator.num_processes
                if not accelerator.sync_gradients:
                    continue
                state.global_step += 1
                state.batches_in_epoch = position
                step_seconds += time.perf_counter() - step_start
                progress.update(1)
                if state.global_step % t.logging_steps == 0 or state.global_step == total_steps:
                    elapsed = time.perf_counter() - clock
                    record = {"step": state.global_step, "epoch": state.epoch, "loss": round(output.loss.item(), 6),
                              "lr": scheduler.get_last_lr()[0], "examples_per_s": round(examples_since / elapsed, 2)}
                    progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}",
                                         pairs_s=f"{record['examples_per_s']:.1f}")
                    log.write(record)
                    examples_since, clock = 0, time.perf_counter()
                if evaluator is not None and t.eval_steps and state.global_step % t.eval_steps == 0:
                    run_evaluation(evaluator, unwrapped.embedder, state, log, best_dir, t.metric_for_best_model,
                                   accelerator)
                if t.save_steps and state.global_step % t.save_steps == 0:
                    save_checkpoint(accelerator, output_dir, state, t.save_total_limit)
                if state.global_step >= total_steps:
                    break
                step_start = time.perf_counter()
            else:
                state.epoch += 1
                state.batches_in_epoch = 0
    except KeyboardInterrupt:
        progress.close()
        path = save_checkpoint(accelerator, output_dir, state, None)
        logger.warning("interrupted: saved %s; resume with training.resume_from_checkpoint=%s", path, path)
        raise
    progress.close()
    if evaluator is not None and (not t.eval_steps or state.global_step % t.eval_steps):
        run_evaluation(evaluator, unwrapped.embedder, state, log, best_dir, t.metric_for_best_model, accelerator)
    final_dir = output_dir / "final"
    if accelerator.is_main_process:
        from textdml.hub.model_card import write_model_card

        unwrapped.embedder.save_pretrained(final_dir)
        write_model_card(final_dir, config, unwrapped.loss, log.records)
    accelerator.wait_for_everyone()
    return TrainResult(final_dir, best_dir if best_dir.exists() else None, state.global_step, log.records, step_seconds)


def loss_input_kinds(spec: dict[str, Any]) -> tuple[str, ...]:
    from textdml.registry import LOSSES, import_target

    cls = import_target(spec["target"]) if "target" in spec else LOSSES.get(spec["name"])
    return tuple(getattr(cls, "input_kinds", ("pairs", "triplets", "scored_pairs", "labelled")))


def run_evaluation(evaluator: Evaluator, embedder: Embedder, state: TrainerState, log: MetricLog, best_dir: Path,
                   metric: str | None, accelerator: Accelerator) -> dict[str, float]:
    if not accelerator.is_main_process:
        accelerator.wait_for_everyone()
        return {}
    results = evaluator(embedder)
    log.write({"step": state.global_step, **{f"eval_{k}": v for k, v in results.items()}})
    metric = metric or getattr(evaluator, "primary_metric", None)
    if metric is not None:
        if metric not in results:
            raise KeyError(f"metric_for_best_model {metric!r} is not among the evaluation results {sorted(results)}")
        if state.best_metric is None or results[metric] > state.best_metric:
            state.best_metric, state.best_step = results[metric], state.global_step
            embedder.save_pretrained(best_dir)
    accelerator.wait_for_everyone()
    return results


class MetricLog:
    """Metrics to ``metrics.jsonl`` (and TensorBoard when it is installed)."""

    def __init__(self, output_dir: Path, enabled: bool):
        self.enabled = enabled
        self.path = output_dir / "metrics.jsonl"
        self.records: list[dict[str, Any]] = []
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(output_dir / "tensorboard"))
            except ImportError:
                pass

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if not self.enabled:
            return
        with open(self.path, "a") as file:
            file.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, record["step"])
            self.writer.flush()
