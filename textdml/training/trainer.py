"""The two ways to start a run: ``train(config)`` from a recipe, ``Trainer`` from Python objects.

``train(config)`` builds a model, a loss and data from a recipe; ``Trainer`` takes them built
(sentence-transformers' trainer shape)::

    trainer = Trainer(model=Embedder.from_pretrained(path), loss=InfoNCELoss(temperature=0.05),
                      train_dataset=pairs, eval_dataset=held_out, args=TrainingConfig(max_steps=100))
    result = trainer.train()

Both build the run with :func:`textdml.training.setup.build_run` and train it with
:func:`textdml.training.loop.fit`: the same Accelerate loop, checkpoints and resume
(``args.resume_from_checkpoint="latest"``), best model, metrics log and model card. Here the run's
callbacks are put together: the final save, re-mining, diagnostics, the push, then the user's.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import Dataset, IterableDataset

from textdml.config import DataConfig, EvalConfig, ModelConfig, RunConfig, TrainingConfig
from textdml.console import quiet_progress_bars
from textdml.data.pipeline import DEFAULT_INPUT_KINDS, TrainingData
from textdml.diagnostics.run import RunDiagnostics
from textdml.losses.pml_adapter import adapt_loss
from textdml.miners.pml_adapter import adapt_miner
from textdml.mining.remine import Remining
from textdml.models.embedder import Embedder
from textdml.models.saving import model_kind
from textdml.training import run_folder
from textdml.training.accelerator import check_process_group, create_accelerator
from textdml.training.callbacks import Callback, CallbackList, create_callbacks
from textdml.training.evaluation import Evaluator, check_best_metric
from textdml.training.finish import FinishRun, PushToHub, check_push_target
from textdml.training.loop import TrainResult, fit
from textdml.training.run_stamp import RunStamp, stamp_run_folder
from textdml.training.setup import RunParts, build_data, build_run, loss_display_name, qualified_name


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

    Builds the model, data, loss and miner from the config (``build_run``), then trains them with
    the loop that ``Trainer`` (the Python API) runs too. ``callbacks`` (and ``training.callbacks``)
    are called on logging, evaluation and saving. A given ``accelerator`` logs to the trackers it
    was built with, not to ``training.report_to``.
    """
    hub_token = check_push_target(config.training)  # a bad repo id or a missing token fails now, not after the training
    accelerator = accelerator or create_accelerator(config.training)
    return build_and_fit(config, accelerator, callbacks=callbacks, hub_token=hub_token, dataset=train_dataset,
                         model=embedder, evaluator=evaluator)


def build_and_fit(config: RunConfig, accelerator: Accelerator, *, callbacks: list[Callback] | None = None,
                  hub_token: str | None = None, **given: Any) -> TrainResult:
    """Check and stamp the run folder, build the run (``build_run``, with what is ``given``), train it.

    ``train`` and ``Trainer.train`` both come here, so a folder holding another run, or a best
    metric the evaluator does not compute, fails before anything is loaded.
    """
    t = config.training
    check_best_metric(t.metric_for_best_model, given.get("evaluator"))
    check_process_group(accelerator)
    stamp = stamp_run_folder(config, accelerator)  # before anything is loaded or written
    # A run replacing another (overwrite_output_dir) that fails before its first checkpoint puts it back.
    with run_folder.previous_run_restored_on_failure(Path(t.output_dir), accelerator.is_main_process):
        set_seed(t.seed)
        with quiet_progress_bars(not t.show_progress_bar):  # transformers' and datasets' loading bars too
            parts = build_run(config, accelerator=accelerator, **given)
        return run_parts(parts, accelerator, stamp=stamp, callbacks=callbacks, hub_token=hub_token)


def run_parts(parts: RunParts, accelerator: Accelerator, *, stamp: RunStamp | None = None,
              callbacks: list[Callback] | None = None, hub_token: str | None = None) -> TrainResult:
    """Train built parts with the run's callbacks: what ``train`` and ``Trainer`` share."""
    t = parts.config.training
    if stamp is None:  # the Trainer's path (train() checked and stamped before loading)
        check_best_metric(t.metric_for_best_model, parts.evaluator)
        stamp_run_folder(parts.config, accelerator)
    with run_folder.previous_run_restored_on_failure(Path(t.output_dir), accelerator.is_main_process):
        if t.push_to_hub and hub_token is None:
            hub_token = check_push_target(t)
        # The training bar is the only bar of a run (none with show_progress_bar=false): saving and
        # evaluating inside it draw no bars of their own, and each evaluation prints one line above it.
        with quiet_progress_bars():
            return fit(parts, accelerator, run_callbacks(parts, callbacks, hub_token))


def run_callbacks(parts: RunParts, given: list[Callback] | None, hub_token: str | None) -> CallbackList:
    """The final save first, then re-mining and diagnostics, the push, and last the user's callbacks
    (``given``, then ``training.callbacks``)."""
    t = parts.config.training
    built_in: list[Callback] = [FinishRun()]
    if t.remine_every:
        built_in.append(Remining(parts.config, t.remine_every, t.show_progress_bar))
    built_in += [RunDiagnostics(), PushToHub(hub_token)]
    return CallbackList([*built_in, *create_callbacks(t.callbacks, given or []).callbacks])


def run_training(config: RunConfig, model: Any, loss: Any, miner: Any, data: TrainingData, *,
                 evaluator: Evaluator | None, accelerator: Accelerator, stamp: RunStamp | None = None,
                 callbacks: list[Callback] | None = None, hub_token: str | None = None) -> TrainResult:
    """Built objects in, saved models out (kept for code written against the earlier loop)."""
    parts = build_run(config, model=model, loss=loss, miner=miner, data=data, evaluator=evaluator)
    return run_parts(parts, accelerator, stamp=stamp, callbacks=callbacks, hub_token=hub_token)


class Trainer:
    """Train an embedder (or a dual encoder) with a loss object, on a ``datasets`` table.

    Args:
        model: an ``Embedder`` (e.g. ``Embedder.from_pretrained(...)``) or a ``DualEncoder``.
        loss: any loss of ``textdml.losses`` (or your own with the same signature, or a
            pytorch-metric-learning loss, used as it is). A class-level loss (ArcFace, proxies) is
            built by you with ``num_classes``: class ids are the sorted distinct labels.
        train_dataset: a ``Dataset`` or a streaming ``IterableDataset``; columns play roles by name
            (``anchor, positive[, negative...]`` or ``anchor, label``; rename with ``columns``).
        args: the training settings (``TrainingConfig``: output_dir, batch_size, max_steps,
            eval_steps, save_steps, resume_from_checkpoint, ...). Defaults when None.
        eval_dataset: held-out rows evaluated like a recipe's ``eval.data`` (pairs -> retrieval
            metrics, labelled rows -> open-set metrics); ignored when ``evaluator`` is given.
        evaluator: any callable ``model -> dict of metrics``: a textdml evaluator or a
            sentence-transformers evaluator (InformationRetrievalEvaluator, ...), as it is.
        miner: a textdml or pytorch-metric-learning miner, or None.
        columns: role -> column name, e.g. ``{"anchor": "question", "positive": "answer"}``.
        accelerator: an ``accelerate.Accelerator`` to train with (default: one from ``args``).

    Example (as in the README, section "Coming from sentence-transformers")::

        model = Embedder.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
        pairs = Dataset.from_dict({"anchor": questions, "positive": answers})
        result = Trainer(model, InfoNCELoss(temperature=0.05), pairs,
                         args=TrainingConfig(output_dir="runs/qa", max_steps=100)).train()
    """

    def __init__(
        self,
        model: Any,
        loss: Any,
        train_dataset: Dataset | IterableDataset,
        *,
        args: TrainingConfig | None = None,
        eval_dataset: Dataset | None = None,
        evaluator: Evaluator | None = None,
        miner: Any = None,
        columns: dict[str, str] | None = None,
        accelerator: Accelerator | None = None,
    ):
        if not callable(loss):
            raise ValueError(f"Trainer(loss=...) must be a loss module such as InfoNCELoss(), got {loss!r}")
        if not isinstance(train_dataset, (Dataset, IterableDataset)):
            raise ValueError("Trainer(train_dataset=...) must be a datasets.Dataset or IterableDataset, got "
                             f"{type(train_dataset).__name__} (e.g. Dataset.from_dict({{'anchor': [...], 'positive': [...]}}))")
        if args is not None and not isinstance(args, TrainingConfig):
            raise ValueError(f"Trainer(args=...) must be a textdml TrainingConfig, got {type(args).__name__}")
        self.model = model
        self.loss = adapt_loss(loss)
        self.miner = adapt_miner(miner)
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.evaluator = evaluator
        self.args = copy.deepcopy(args) if args is not None else TrainingConfig()
        self.columns = dict(columns or {})
        self.accelerator = accelerator

    def run_config(self) -> RunConfig:
        """What the run records (run_config.json, the model card): the objects by class name."""
        kind = {"image_text": "dual", "sparse": "sparse"}.get(model_kind(self.model), "text")
        loss_spec = {"target": qualified_name(self.loss)}
        miner_spec = {"target": qualified_name(self.miner)} if self.miner is not None else None
        return RunConfig(
            model=ModelConfig(name_or_path=str(getattr(self.model, "name", type(self.model).__name__)),
                              kind=kind),
            train=DataConfig(path="<Trainer train_dataset>", columns=self.columns,
                             streaming=isinstance(self.train_dataset, IterableDataset)),
            eval=EvalConfig(),
            loss=loss_spec, miner=miner_spec, training=copy.deepcopy(self.args),
        )

    def create_evaluator(self) -> Evaluator | None:
        if self.evaluator is not None:
            return self.evaluator
        if self.eval_dataset is None:
            return None
        from textdml.evaluation.build import evaluator_from_dataset

        return evaluator_from_dataset(self.eval_dataset, EvalConfig(data=DataConfig(path="<eval_dataset>",
                                                                                    columns=self.columns)))

    def prepare_data(self, config: RunConfig) -> TrainingData:
        return build_data(config, self.model, self.loss, self.train_dataset)

    def train(self, resume_from_checkpoint: str | None = None) -> TrainResult:
        """Run the loop; returns where the final (and best) model were saved.

        Args:
            resume_from_checkpoint: ``"latest"`` or a checkpoint folder; overrides
                ``args.resume_from_checkpoint`` for this call.
        """
        config = self.run_config()
        if resume_from_checkpoint is not None:
            config.training.resume_from_checkpoint = resume_from_checkpoint
        accelerator = self.accelerator or create_accelerator(config.training)
        return build_and_fit(config, accelerator, dataset=self.train_dataset, model=self.model, loss=self.loss,
                             miner=self.miner, evaluator=self.create_evaluator())


__all__ = ["DEFAULT_INPUT_KINDS", "Trainer", "loss_display_name", "qualified_name", "run_training", "train"]
