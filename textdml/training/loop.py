"""The training loop (Accelerate; one CPU to many GPUs), with evaluation, checkpoints and resume."""

from __future__ import annotations

import functools
import json
import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DistributedType
from accelerate.utils import DataLoaderConfiguration, set_seed
from datasets import Dataset, IterableDataset, concatenate_datasets
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from textdml.config import DataConfig, RunConfig, TrainingConfig, to_dict
from textdml.console import format_evaluation, own_bars_shown, quiet_progress_bars, write_line
from textdml.data.collator import RoleCollator
from textdml.data.loading import check_text_columns, is_list_column, label_mapping, load_data
from textdml.data.roles import ColumnRoles, resolve_roles
from textdml.data.shuffle import SeededShuffleSampler
from textdml.diagnostics.run import RunDiagnostics
from textdml.mining.remine import Remining
from textdml.models.embedder import Embedder
from textdml.redaction import redact
from textdml.training import run_folder
from textdml.training.build import build_loss, build_miner, create_model
from textdml.training.callbacks import Callback, CallbackList, create_callbacks
from textdml.training.checkpoint import (
    TrainerState,
    checkpoint_dirs,
    guard_write,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from textdml.training.loss_data import fit_data_to_loss
from textdml.training.multimodal_task import ImageTextTask
from textdml.training.optim import create_optimizer
from textdml.training.signals import StopRequest, TrainingInterrupted
from textdml.training.task import EmbeddingTask

logger = logging.getLogger(__name__)

Evaluator = Callable[[Embedder], dict[str, float]]


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


def resolve_mixed_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def create_accelerator(t: TrainingConfig) -> Accelerator:
    """The Accelerator of a run, logging to ``training.report_to``. Every process reads its own
    batches (no dispatching): a batch holds tokenised blocks, not one tensor, and Accelerate's
    dispatching (its default for streaming data) can only slice tensors."""
    from accelerate.utils import ProjectConfiguration

    from textdml.training import trackers

    output_dir = Path(t.output_dir)
    report_to = trackers.resolve_trackers(t.report_to)
    return Accelerator(mixed_precision=resolve_mixed_precision(t.mixed_precision),
                       gradient_accumulation_steps=t.gradient_accumulation_steps,
                       dataloader_config=DataLoaderConfiguration(dispatch_batches=False),
                       log_with=report_to or None,
                       project_config=ProjectConfiguration(project_dir=str(output_dir),
                                                           logging_dir=str(trackers.tracker_logging_dir(output_dir))))


def check_dispatch(accelerator: Accelerator, dataset: Any) -> None:
    """A given Accelerator that would dispatch streaming batches from the main process: made to
    let each process read its own (None = Accelerate's default), or refused when asked for."""
    loader_config = accelerator.dataloader_config
    if loader_config.dispatch_batches is None:
        loader_config.dispatch_batches = False
    elif loader_config.dispatch_batches and isinstance(dataset, IterableDataset):
        raise ValueError("the Accelerator has dispatch_batches=True, which cannot split textdml's tokenised batches: "
                         "create it with DataLoaderConfiguration(dispatch_batches=False)")


def train(
    config: RunConfig,
    *,
    evaluator: Evaluator | None = None,
    train_dataset: Dataset | IterableDataset | None = None,
    embedder: Embedder | None = None,
    accelerator: Accelerator | None = None,
    callbacks: list[Callback] | None = None,
) -> TrainResult:
    """Train the embedder of ``config``; returns where the final (and best) model were saved.

    Builds the model, data, loss and miner from the config, then runs :func:`run_training`, the
    loop that ``textdml.training.trainer.Trainer`` (the Python API) runs too. ``callbacks`` (and
    ``training.callbacks``) are called on logging, evaluation and saving. A given ``accelerator``
    logs to the trackers it was built with, not to ``training.report_to``.
    """
    t = config.training
    hub_token = check_push_target(t)  # a bad repo id or a missing token fails now, not after the training
    check_best_metric(t.metric_for_best_model, evaluator)
    accelerator = accelerator or create_accelerator(t)
    check_process_group(accelerator)
    stamp = stamp_run_folder(config, accelerator)  # before anything is loaded or written
    # A run replacing another (overwrite_output_dir) that fails before its first checkpoint puts it back.
    with run_folder.previous_run_restored_on_failure(Path(t.output_dir), accelerator.is_main_process):
        set_seed(t.seed)
        with quiet_progress_bars(not t.show_progress_bar):  # transformers' and datasets' loading bars too
            embedder = embedder or create_model(config.model)
            if t.save_adapter and is_dual_encoder(embedder):  # fail now, not at the final save
                from textdml.models.adapters import check_reproducible_base

                check_reproducible_base(getattr(embedder, "base_spec", None) or {})
            dual = is_dual_encoder(embedder)
            loss_name = config.loss.get("name") or config.loss.get("target")
            loss_cls_kinds = loss_input_kinds(config.loss)
            prepare = prepare_image_data if dual else prepare_training_data
            if config.mine is not None and train_dataset is None and not dual:
                train_dataset = mine_before_training(config, embedder, accelerator)
            data = prepare(config, embedder, loss_cls_kinds, loss_name, train_dataset)
        loss = build_loss(config.loss, embedding_size=embedder.embedding_dim,
                          num_classes=len(data.label_ids) if data.label_ids else None, model=embedder)
        return run_training(config, embedder, loss, build_miner(config.miner), data, evaluator=evaluator,
                            accelerator=accelerator, stamp=stamp, callbacks=callbacks, hub_token=hub_token)


def check_push_target(t: TrainingConfig) -> str | None:
    """With ``training.push_to_hub``: the repo id checked and the token found (before any training)."""
    if not t.push_to_hub:
        return None
    from textdml.hub.push import check_repo_id, find_token

    check_repo_id(t.push_to_hub)
    return find_token(None)


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


@dataclass
class RunStamp:
    """What identifies a run in its folder: the redacted config, its identity and fingerprint."""

    config_dict: dict[str, Any]
    identity: dict[str, Any]
    fingerprint: str

    @classmethod
    def of(cls, config: RunConfig) -> RunStamp:
        config_dict = redact(to_dict(config))
        identity = run_folder.run_identity(config_dict)
        return cls(config_dict, identity, run_folder.config_fingerprint(identity))


def stamp_run_folder(config: RunConfig, accelerator: Accelerator) -> RunStamp:
    """Check that ``training.output_dir`` holds this run only (see ``run_folder``) and stamp it."""
    t = config.training
    output_dir = Path(t.output_dir)
    stamp = RunStamp.of(config)
    if accelerator.is_main_process:  # a run killed while replacing another one: keep it, or the other
        run_folder.recover_previous_run(output_dir, saved=bool(checkpoint_dirs(output_dir)) or
                                        (output_dir / "final").is_dir())
    accelerator.wait_for_everyone()
    run_folder.prepare_run_folder(output_dir, stamp.fingerprint, stamp.identity, resume=t.resume_from_checkpoint,
                                  overwrite=t.overwrite_output_dir, force_resume=t.force_resume,
                                  checkpoints=checkpoint_dirs(output_dir), is_main=accelerator.is_main_process)
    accelerator.wait_for_everyone()
    return stamp


def run_training(config: RunConfig, model: Any, loss: Any, miner: Any, data: TrainingData, *,
                 evaluator: Evaluator | None, accelerator: Accelerator, stamp: RunStamp | None = None,
                 callbacks: list[Callback] | None = None, hub_token: str | None = None) -> TrainResult:
    """The training loop of ``train(config)`` and of ``Trainer``: built objects in, saved models out.

    ``config.training`` drives it; the rest of ``config`` is what the run records (run_config.json,
    the model card) and what a sharded run rebuilds its model from.
    """
    # The training bar is the only bar of a run (none with show_progress_bar=false): saving and
    # evaluating inside it draw no bars of their own, and each evaluation prints one line above it.
    if stamp is None:  # the Trainer's path (train() checked and stamped before loading)
        check_best_metric(config.training.metric_for_best_model, evaluator)
        stamp = stamp_run_folder(config, accelerator)
    output_dir = Path(config.training.output_dir)
    with run_folder.previous_run_restored_on_failure(output_dir, accelerator.is_main_process):
        if config.training.push_to_hub and hub_token is None:
            hub_token = check_push_target(config.training)
        callback_list = create_callbacks(config.training.callbacks, callbacks or [])
        with quiet_progress_bars():
            return _training_loop(config, model, loss, miner, data, evaluator, accelerator, stamp, callback_list,
                                  hub_token)


def _training_loop(config: RunConfig, embedder: Any, loss: Any, miner: Any, data: TrainingData,
                   evaluator: Evaluator | None, accelerator: Accelerator, stamp: RunStamp,
                   callback_list: CallbackList, hub_token: str | None) -> TrainResult:
    from textdml.training import run_info, trackers

    t = config.training
    run_info.log_parameter_counts(embedder)
    output_dir = Path(t.output_dir)
    config_dict, identity, fingerprint = stamp.config_dict, stamp.identity, stamp.fingerprint
    dual = is_dual_encoder(embedder)
    check_dispatch(accelerator, data.dataset)
    fit_data_to_loss(loss, data, t.seed)  # score ranges, raw texts for a teacher, input noise
    task = (ImageTextTask if dual else EmbeddingTask)(embedder, loss, miner)
    dataloader, sampler = create_dataloader(data, config, embedder)
    steps_per_epoch = None if isinstance(data.dataset, IterableDataset) else math.ceil(
        len(dataloader) / t.gradient_accumulation_steps)
    # A cached loss (cached_gist_embed) brings its own mini-batch size: GradCache without the config flag.
    mini_batch_size = plan_grad_cache(config, embedder, accelerator) if t.grad_cache else getattr(
        loss, "mini_batch_size", None)
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
        run_folder.check_checkpoint_run(checkpoint, fingerprint, identity, t.force_resume)
        state = load_checkpoint(accelerator, checkpoint)
        logger.info("resumed from %s at step %d", checkpoint, state.global_step)
    state.config_sha256 = fingerprint
    remining = Remining(config, t.remine_every, t.show_progress_bar) if t.remine_every else None

    def rebuild_loader(table: Dataset) -> tuple[Any, Any]:
        new_data = prepare_training_data(config, embedder, loss.input_kinds, type(loss).__name__, table)
        fit_data_to_loss(loss, new_data, t.seed)
        loader, new_sampler = create_dataloader(new_data, config, embedder)
        return accelerator.prepare(loader), new_sampler

    if remining is not None and state.mined_at_step:  # resumed after a re-mine: the table of those weights
        dataloader, sampler = rebuild_loader(remining.load(state.mined_at_step))
    if accelerator.is_main_process:
        run_folder.write_run_files(output_dir, config_dict, fingerprint)
    if accelerator.log_with:
        accelerator.init_trackers(t.tracker_project, trackers.flat_hyperparameters(config_dict),
                                  trackers.init_kwargs([str(x) for x in accelerator.log_with], output_dir.name,
                                                       t.tracker_kwargs, state.global_step if checkpoint else None))
    log = MetricLog(output_dir, accelerator.is_main_process, accelerator, callback_list)
    if accelerator.is_main_process:  # a resumed run logs its steps after the checkpoint anew
        log.records = run_folder.truncate_metrics(log.path, state.global_step)
    unwrapped = accelerator.unwrap_model(task)
    diagnostics = RunDiagnostics(config, unwrapped, data, evaluator, output_dir, accelerator, is_sharded(accelerator))

    diagnostics.start()
    best_dir = output_dir / "best"
    if evaluator is not None and t.eval_on_start and state.global_step == 0:  # a resumed run has its step 0
        with own_bars_shown(t.show_progress_bar and accelerator.is_main_process):  # no training bar yet
            run_evaluation(evaluator, unwrapped.embedder, state, log, best_dir, t.metric_for_best_model, accelerator,
                           t.save_adapter, track_best=False)
    progress = tqdm(total=total_steps, initial=state.global_step, desc="Training", dynamic_ncols=True,
                    disable=not (t.show_progress_bar and accelerator.is_main_process))
    examples_since, clock = 0, time.perf_counter()
    step_seconds = 0.0  # training time only: evaluation and checkpoints are not counted
    # Signals only set a flag, checked after each optimiser step; in_step marks the stretch where
    # weights and counters disagree, in which a bare KeyboardInterrupt must not be checkpointed.
    stop, in_step = StopRequest(), False
    grad_norm = None
    try:
        stop.__enter__()
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
            fresh_epoch = position == 0
            step_start = time.perf_counter()
            for batch in batches:
                position += 1
                in_step = True
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
                in_step = False
                step_seconds += time.perf_counter() - step_start
                progress.update(1)
                if state.global_step % t.logging_steps == 0 or state.global_step == total_steps:
                    elapsed = time.perf_counter() - clock
                    record = {"step": state.global_step, "epoch": state.epoch, "loss": round(output.loss.item(), 6),
                              "lr": scheduler.get_last_lr()[0], "examples_per_s": round(examples_since / elapsed, 2)}
                    record |= diagnostics.health(batch, state.global_step, grad_norm)
                    progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}",
                                         pairs_s=f"{record['examples_per_s']:.1f}")
                    log.write(record, state)
                    examples_since, clock = 0, time.perf_counter()
                remined = remining is not None and remining.due(state.global_step, total_steps)
                if remined:  # before the checkpoint of this step, which then resumes on the new table
                    evaluate = None if evaluator is None else functools.partial(evaluator, unwrapped.embedder)
                    dataloader, sampler = remining.refresh(unwrapped.embedder, state.global_step, accelerator,
                                                           rebuild_loader, evaluate, log)
                    state.mined_at_step, state.batches_in_epoch = state.global_step, 0
                if evaluator is not None and t.eval_steps and state.global_step % t.eval_steps == 0:
                    run_evaluation(evaluator, unwrapped.embedder, state, log, best_dir, t.metric_for_best_model,
                                   accelerator, t.save_adapter)
                if t.save_steps and state.global_step % t.save_steps == 0:
                    path = save_checkpoint(accelerator, output_dir, state, t.save_total_limit, config_dict=config_dict)
                    log.saved(path, "checkpoint", state)
                if stop.requested(accelerator):
                    raise KeyboardInterrupt
                if state.global_step >= total_steps or remined:
                    break
                step_start = time.perf_counter()
            else:
                if fresh_epoch and position == 0:  # a stream with no full batch would loop forever
                    raise ValueError(f"the training data gave no full batch of {t.batch_size} rows in epoch "
                                     f"{state.epoch}; lower training.batch_size or check the data")
                state.epoch += 1
                state.batches_in_epoch = 0
    except KeyboardInterrupt as err:
        progress.close()
        stop.restore()
        signum = stop.signum or 2  # SIGINT
        if stop.forced or (in_step and stop.signum is None):  # a step cut short: weights and counters disagree
            logger.warning("interrupted inside step %d: no checkpoint saved (it would not match the weights); the "
                           "last saved checkpoint is intact", state.global_step + 1)
            raise
        path = save_checkpoint(accelerator, output_dir, state, None, config_dict=config_dict)
        message = (f"interrupted at step {state.global_step}: saved {path}; resume with "
                   "training.resume_from_checkpoint=latest")
        logger.warning(message)
        log.saved(path, "checkpoint", state)
        accelerator.end_training()
        raise TrainingInterrupted(signum, path, message) from err
    except BaseException:
        stop.restore()
        raise
    progress.close()
    stop.notice = "finishing the final model, then stopping"
    # The signal handler stays on through the final evaluation and save: a first Ctrl-C / SIGTERM
    # lets final/ finish (the whole model, seconds away) and then stops, skipping the push and the
    # report; a second stops at once, leaving the previous final/ (if any) whole.
    try:
        final_dir = finish_run(config, evaluator, unwrapped, task, data, accelerator, state, log, diagnostics,
                               best_dir, step_seconds, hub_token, stop)
        signum = stop.requested(accelerator)
    finally:
        stop.restore()
    if signum is not None:
        message = (f"{signal.Signals(signum).name} received while saving the final model: {final_dir} is complete; "
                   "stopped before " + ("the push and " if t.push_to_hub else "") + "the run report")
        logger.warning(message)
        accelerator.end_training()
        raise TrainingInterrupted(signum, None, message)
    accelerator.end_training()
    return TrainResult(final_dir, best_dir if best_dir.exists() else None, state.global_step, log.records, step_seconds)


def finish_run(config: RunConfig, evaluator: Evaluator | None, unwrapped: Any, task: torch.nn.Module,
               data: TrainingData, accelerator: Accelerator, state: TrainerState, log: MetricLog,
               diagnostics: RunDiagnostics, best_dir: Path, step_seconds: float, hub_token: str | None,
               stop: StopRequest) -> Path:
    """After the last step: the final evaluation, final/ (atomic), the cards, the report and the push."""
    from textdml.models.adapters import save_model
    from textdml.training import run_info

    t = config.training
    output_dir = Path(t.output_dir)
    if evaluator is not None and (not t.eval_steps or state.global_step % t.eval_steps):
        with own_bars_shown(t.show_progress_bar and accelerator.is_main_process):  # the training bar is closed
            run_evaluation(evaluator, unwrapped.embedder, state, log, best_dir, t.metric_for_best_model, accelerator,
                           t.save_adapter)
    final_dir = output_dir / "final"
    final_embedder = gathered_embedder(accelerator, task, config) if is_sharded(accelerator) else unwrapped.embedder
    summary = run_info.summarize_run(config, data, evaluator, unwrapped, accelerator, step_seconds, state.global_step)
    if accelerator.is_main_process:
        from textdml.hub.model_card import write_model_card

        with guard_write(final_dir, "final model", output_dir), \
                run_folder.atomic_folder(final_dir) as folder:  # a kill mid-save never leaves a partial final/
            save_model(final_embedder, folder, keep_adapter=t.save_adapter)
            write_model_card(folder, config, unwrapped.loss, log.records, summary=summary)
        if any((best_dir / marker).exists() for marker in ("modules.json", "textdml_dual_encoder.json",
                                                           "textdml_dual_adapter.json")):
            write_model_card(best_dir, config, unwrapped.loss, log.records, summary=summary)
        log.saved(final_dir, "final", state)
        run_folder.discard_previous_run(output_dir)  # this run has its model: a run it replaces goes now
        if stop.signum is None:  # a stop request skips what comes after the model itself
            diagnostics.finish(final_embedder)
        if t.push_to_hub and stop.signum is None:
            from textdml.hub.push import push_to_hub

            pushed = push_to_hub(final_dir, t.push_to_hub, private=t.hub_private, token=hub_token)
            logger.info("pushed the final model to %s", pushed.url)
    accelerator.wait_for_everyone()
    return final_dir


def mine_before_training(config: RunConfig, embedder: Embedder, accelerator: Accelerator) -> Dataset:
    """Hard negatives for the train pairs, mined with the starting model (``config.mine``).

    The main process mines; the others then get its table (see ``mine_on_main_process``). A
    resumed run finds the table already mined for these weights and settings.
    """
    from textdml.mining.remine import mined_folder, mined_versions
    from textdml.mining.run import mine_on_main_process

    return mine_on_main_process(config, embedder, accelerator, mined_folder(config, 0),
                                config.training.show_progress_bar, own_versions=mined_versions(config))


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
    from textdml.registry import LOSSES, import_component_class

    cls = import_component_class(spec["target"], "loss") if "target" in spec else LOSSES.get(spec["name"])
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
            from textdml.models.adapters import save_model

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
