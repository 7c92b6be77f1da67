"""The training loop (Accelerate; one CPU to many GPUs), with evaluation, checkpoints and resume."""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DistributedType
from accelerate.utils import set_seed
from datasets import Dataset, IterableDataset, concatenate_datasets
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from textdml.config import DataConfig, RunConfig, to_dict
from textdml.data.collator import RoleCollator
from textdml.data.loading import check_text_columns, is_list_column, label_mapping, load_data
from textdml.data.roles import ColumnRoles, resolve_roles
from textdml.data.shuffle import SeededShuffleSampler
from textdml.diagnostics.run import RunDiagnostics
from textdml.models.embedder import Embedder
from textdml.training.build import build_loss, build_miner, create_model
from textdml.training.checkpoint import TrainerState, load_checkpoint, resolve_checkpoint, save_checkpoint
from textdml.training.multimodal_task import ImageTextTask
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


@dataclass
class TrainingData:
    dataset: Dataset | IterableDataset
    roles: ColumnRoles
    collator: RoleCollator
    label_ids: dict | None
    set_lengths: list[int] | None  # rows of each train set when there are several


def load_train_set(data: DataConfig) -> Dataset | IterableDataset:
    return load_data(data.path, split=data.split, name=data.name, data_files=data.data_files,
                     streaming=data.streaming, max_rows=data.max_rows, **data.options)


def resolve_train_set(dataset: Dataset | IterableDataset, data: DataConfig, loss_kinds: tuple[str, ...],
                      loss_name: str) -> ColumnRoles:
    columns = list(dataset.column_names or dataset.features or [])
    list_columns = [c for c in columns if is_list_column(dataset, c)]
    roles = resolve_roles(columns, loss_name, loss_kinds, data.columns, list_columns)
    check_text_columns(dataset, roles, source=f"train data {data.path!r}")
    return roles


def to_canonical_columns(dataset: Dataset, roles: ColumnRoles) -> Dataset:
    """Rename role columns to role names and drop the rest, so several train sets concatenate."""
    renames = {roles.anchor: "anchor"}
    if roles.positive:
        renames[roles.positive] = "positive"
    if roles.label:
        renames[roles.label] = "label"
    renames.update({column: f"negative_{i + 1}" for i, column in enumerate(roles.negatives)})
    dataset = dataset.select_columns(list(renames))
    return dataset.rename_columns({old: new for old, new in renames.items() if old != new})


def prepare_training_data(config: RunConfig, embedder: Embedder, loss_kinds: tuple[str, ...], loss_name: str,
                          dataset: Dataset | IterableDataset | None = None) -> TrainingData:
    """Load (unless given), map columns to roles, check every text, and build the collator."""
    sets = config.train if isinstance(config.train, list) else [config.train]
    if dataset is not None:
        roles = resolve_train_set(dataset, sets[0], loss_kinds, loss_name)
        set_lengths = None
    elif len(sets) == 1:
        dataset = load_train_set(sets[0])
        roles = resolve_train_set(dataset, sets[0], loss_kinds, loss_name)
        set_lengths = None
    else:
        parts = []
        for i, data in enumerate(sets):
            part = load_train_set(data)
            if not isinstance(part, Dataset):
                raise ValueError(f"train[{i}] ({data.path}): several train sets must be map-style (streaming=false)")
            part_roles = resolve_train_set(part, data, loss_kinds, loss_name)
            if parts and part_roles.kind != roles.kind:
                raise ValueError(f"train[{i}] ({data.path}) holds {part_roles.kind}, train[0] holds {roles.kind}: "
                                 "all train sets of one run must be of one input kind")
            roles = part_roles
            parts.append(to_canonical_columns(part, part_roles))
        dataset = concatenate_datasets(parts)
        roles = resolve_roles(dataset.column_names, loss_name, loss_kinds, {})
        set_lengths = [len(part) for part in parts]
    label_ids = label_mapping(dataset, roles.label) if roles.kind == "labelled" else None
    collator = RoleCollator(embedder, roles, label_ids, bucket_rows=config.training.bucket_rows)
    return TrainingData(dataset, roles, collator, label_ids, set_lengths)


def prepare_image_data(config: RunConfig, model: Any, loss_kinds: tuple[str, ...], loss_name: str,
                       dataset: Dataset | IterableDataset | None = None) -> TrainingData:
    """Image–text pairs or labelled images: roles by column name; images are decoded per batch."""
    from textdml.data.image_collator import ImageTextCollator
    from textdml.data.images import resolve_image_roles

    sets = config.train if isinstance(config.train, list) else [config.train]
    if len(sets) > 1:
        raise ValueError("several train sets are supported for text data only; concatenate the image data sets")
    dataset = dataset if dataset is not None else load_train_set(sets[0])
    roles = resolve_image_roles(list(dataset.column_names or dataset.features or []), loss_name, loss_kinds,
                                sets[0].columns)
    label_ids = label_mapping(dataset, roles.label) if roles.kind == "labelled_images" else None
    return TrainingData(dataset, roles, ImageTextCollator(model, roles, label_ids), label_ids, None)  # type: ignore[arg-type]


def create_batch_sampler(data: TrainingData, config: RunConfig, embedder: Embedder) -> Any:
    """The batch sampler the training config asks for (None: a plain shuffled sampler will do)."""
    t, dataset, roles = config.training, data.dataset, data.roles
    if data.set_lengths is not None:
        from textdml.data.batching import MultiDatasetBatchSampler

        return MultiDatasetBatchSampler(data.set_lengths, t.batch_size, strategy=t.multi_dataset_strategy,
                                        seed=t.seed, drop_last=True)
    if t.max_tokens_per_batch:
        if roles.kind not in ("pairs", "triplets", "scored_pairs", "labelled"):
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


def row_token_lengths(dataset: Dataset, roles: ColumnRoles, embedder: Embedder) -> list[int]:
    """Tokens per row: the longest text of the row (what it pads to), capped at max_seq_length."""
    lengths = [0] * len(dataset)
    for column in roles.text_columns:
        encoded = embedder.tokenizer(list(dataset[column]), truncation=True, max_length=embedder.max_seq_length)
        lengths = [max(a, len(ids)) for a, ids in zip(lengths, encoded["input_ids"])]
    return lengths


def create_dataloader(data: TrainingData, config: RunConfig, embedder: Embedder) -> tuple[DataLoader, Any]:
    t, dataset = config.training, data.dataset
    if isinstance(dataset, IterableDataset):
        return DataLoader(dataset, batch_size=t.batch_size, collate_fn=data.collator, num_workers=t.num_workers), None
    # The loader's own generator keeps its per-iterator seed draw off the global RNG, which dropout
    # uses: otherwise a resumed run would see different dropout masks than an unbroken one.
    generator = torch.Generator().manual_seed(t.seed)
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
    check_process_group(accelerator)
    set_seed(t.seed)
    embedder = embedder or create_model(config.model)
    dual = is_dual_encoder(embedder)
    loss_name = config.loss.get("name") or config.loss.get("target")
    loss_cls_kinds = loss_input_kinds(config.loss)
    prepare = prepare_image_data if dual else prepare_training_data
    data = prepare(config, embedder, loss_cls_kinds, loss_name, train_dataset)
    loss = build_loss(config.loss, embedding_size=embedder.embedding_dim,
                      num_classes=len(data.label_ids) if data.label_ids else None, model=embedder)
    task = (ImageTextTask if dual else EmbeddingTask)(embedder, loss, build_miner(config.miner))
    dataloader, sampler = create_dataloader(data, config, embedder)
    steps_per_epoch = None if isinstance(data.dataset, IterableDataset) else math.ceil(
        len(dataloader) / t.gradient_accumulation_steps)
    mini_batch_size = plan_grad_cache(config, embedder, accelerator) if t.grad_cache else None
    if t.compile:
        embedder.compile()  # in place: parameter names (and saved files) are unchanged
    if t.max_steps is None and steps_per_epoch is None:
        raise ValueError("a streaming data set has no length: set training.max_steps")
    total_steps = t.max_steps or t.epochs * steps_per_epoch  # type: ignore[operator]
    optimizer = create_optimizer(task, t.learning_rate, t.weight_decay, config.loss.get("lr"),
                                 {"image_lr": t.image_lr, "text_lr": t.text_lr, "logit_scale_lr": t.logit_scale_lr}
                                 if dual else None)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(t.warmup_ratio * total_steps), total_steps)
    # The schedule counts optimiser steps. Accelerate's prepared scheduler would step once per
    # process per step (it assumes a schedule in single-process batches), so it is kept out of
    # prepare, stepped by hand after each optimiser step, and registered for checkpoints.
    task, optimizer, dataloader = accelerator.prepare(task, optimizer, dataloader)
    accelerator.register_for_checkpointing(scheduler)

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
    diagnostics = RunDiagnostics(config, unwrapped, data, evaluator, output_dir, accelerator, is_sharded(accelerator))
    diagnostics.start()
    best_dir = output_dir / "best"
    progress = tqdm(total=total_steps, initial=state.global_step, desc="Training", dynamic_ncols=True,
                    disable=not (t.show_progress_bar and accelerator.is_main_process))
    examples_since, clock = 0, time.perf_counter()
    step_seconds = 0.0  # training time only: evaluation and checkpoints are not counted
    grad_norm = None
    try:
        while state.global_step < total_steps:
            batches = dataloader
            if state.batches_in_epoch:
                batches = accelerator.skip_first_batches(dataloader, state.batches_in_epoch)
            # Accelerate's loaders set the sampler's epoch from their own iteration count, which a
            # fresh (resumed or skipping) loader starts at 0: tell them the real epoch. A batch
            # sampler wrapped for sharding is not reached that way, so it is told directly too.
            batches.set_epoch(state.epoch)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(state.epoch)
            position = state.batches_in_epoch
            step_start = time.perf_counter()
            for batch in batches:
                position += 1
                with accelerator.accumulate(task):
                    if mini_batch_size is not None:  # GradCache: backward happens inside
                        output = unwrapped.cached_step(batch, mini_batch_size, embed=task,
                                                       backward=accelerator.backward,
                                                       no_sync=functools.partial(accelerator.no_sync, task))
                        check_finite(output.loss, state)
                    else:
                        output = task(batch)
                        check_finite(output.loss, state)
                        accelerator.backward(output.loss)
                    if accelerator.sync_gradients and t.max_grad_norm:
                        grad_norm = accelerator.clip_grad_norm_(task.parameters(), t.max_grad_norm)
                    optimizer.step()
                    if accelerator.sync_gradients:
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
                    record |= diagnostics.health(batch, state.global_step, grad_norm)
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
    final_embedder = gathered_embedder(accelerator, task, config) if is_sharded(accelerator) else unwrapped.embedder
    if accelerator.is_main_process:
        from textdml.hub.model_card import write_model_card

        final_embedder.save_pretrained(final_dir)
        write_model_card(final_dir, config, unwrapped.loss, log.records)
        diagnostics.finish(final_embedder)
    accelerator.wait_for_everyone()
    return TrainResult(final_dir, best_dir if best_dir.exists() else None, state.global_step, log.records, step_seconds)


def is_dual_encoder(model: Any) -> bool:
    return hasattr(model, "embed_images")


def check_process_group(accelerator: Accelerator) -> None:
    from textdml import distributed

    if distributed.world_size() != accelerator.num_processes:
        raise RuntimeError(
            f"torch.distributed runs {distributed.world_size()} processes but Accelerate trains with "
            f"{accelerator.num_processes}: on CPU, launch with ACCELERATE_USE_CPU=1 (e.g. "
            "ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 -m textdml train ...)"
        )


def check_finite(loss: torch.Tensor, state: TrainerState) -> None:
    if not torch.isfinite(loss.detach()):
        raise NonFiniteLossError(
            f"the loss is {loss.item()} at step {state.global_step + 1} (epoch {state.epoch}); training stopped "
            "before this step changed any weight and the last checkpoint is intact. Lower "
            "training.learning_rate, raise the loss temperature, or use mixed_precision=no."
        )


def plan_grad_cache(config: RunConfig, embedder: Embedder, accelerator: Accelerator) -> int:
    """The GradCache mini-batch: from the config, or the largest that fits this device's memory."""
    t = config.training
    if t.mini_batch_size:
        return t.mini_batch_size
    if is_dual_encoder(embedder):
        raise ValueError("training.grad_cache with a dual encoder needs training.mini_batch_size "
                         "(the memory planner models text encoders only)")
    from textdml.training.memory_planner import plan_mini_batch

    device = accelerator.device
    if device.type == "cuda":
        memory = torch.cuda.mem_get_info(device)[1]
    else:
        import psutil

        memory = psutil.virtual_memory().available // 2
    plan = plan_mini_batch(embedder, embedder.max_seq_length, memory, device=device,
                           activation_dtype=torch.bfloat16 if accelerator.mixed_precision == "bf16" else None,
                           max_mini_batch=t.batch_size)
    logger.info("GradCache %s; effective in-batch negatives per anchor: %d", plan.summary,
                plan.effective_negatives(t.batch_size, accelerator.num_processes))
    return plan.mini_batch_size


def loss_input_kinds(spec: dict[str, Any]) -> tuple[str, ...]:
    from textdml.registry import LOSSES, import_target

    cls = import_target(spec["target"]) if "target" in spec else LOSSES.get(spec["name"])
    return tuple(getattr(cls, "input_kinds", ("pairs", "triplets", "scored_pairs", "labelled")))


def is_sharded(accelerator: Accelerator) -> bool:
    """FSDP and DeepSpeed hold pieces of the weights on each process."""
    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def gathered_embedder(accelerator: Accelerator, task: torch.nn.Module, config: RunConfig) -> Embedder | None:
    """The full weights of a sharded run, gathered (every process must call this) into a fresh
    embedder on the main process, ready for ``save_pretrained``."""
    state = accelerator.get_state_dict(task)
    if not accelerator.is_main_process:
        return None
    embedder = create_model(config.model)
    prefix = "embedder."
    embedder.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    return embedder


def run_evaluation(evaluator: Evaluator, embedder: Embedder, state: TrainerState, log: MetricLog, best_dir: Path,
                   metric: str | None, accelerator: Accelerator) -> dict[str, float]:
    if is_sharded(accelerator):
        # A sharded model needs every process for each forward; evaluate the saved model instead.
        logger.warning("evaluation during training is skipped under FSDP / DeepSpeed: run `textdml eval` on the saved model")
        return {}
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
