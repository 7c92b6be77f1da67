"""``Trainer``: the training loop from Python objects, no YAML (sentence-transformers' trainer shape).

``train(config)`` builds a model, a loss and data from a recipe; ``Trainer`` takes them built::

    trainer = Trainer(model=Embedder.from_pretrained(path), loss=InfoNCELoss(temperature=0.05),
                      train_dataset=pairs, eval_dataset=held_out, args=TrainingConfig(max_steps=100))
    result = trainer.train()

Both run :func:`textdml.training.loop.run_training`: the same Accelerate loop, checkpoints and
resume (``args.resume_from_checkpoint="latest"``), best model, metrics log and model card.
"""

from __future__ import annotations

import copy
from typing import Any

from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import Dataset, IterableDataset

from textdml.config import DataConfig, EvalConfig, ModelConfig, RunConfig, TrainingConfig
from textdml.console import quiet_progress_bars
from textdml.losses.pml_adapter import PMLLossAdapter, adapt_loss
from textdml.miners.pml_adapter import PMLMinerAdapter, adapt_miner
from textdml.training.loop import (
    Evaluator,
    TrainingData,
    TrainResult,
    check_process_group,
    create_accelerator,
    is_dual_encoder,
    prepare_image_data,
    prepare_training_data,
    run_training,
)

DEFAULT_INPUT_KINDS = ("pairs", "triplets", "scored_pairs", "labelled")


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
        dual = is_dual_encoder(self.model)
        loss_spec = {"target": qualified_name(self.loss)}
        miner_spec = {"target": qualified_name(self.miner)} if self.miner is not None else None
        return RunConfig(
            model=ModelConfig(name_or_path=str(getattr(self.model, "name", type(self.model).__name__)),
                              kind="dual" if dual else "text"),
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
        kinds = tuple(getattr(self.loss, "input_kinds", DEFAULT_INPUT_KINDS))
        prepare = prepare_image_data if is_dual_encoder(self.model) else prepare_training_data
        return prepare(config, self.model, kinds, loss_display_name(self.loss), self.train_dataset)

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
        check_process_group(accelerator)
        set_seed(config.training.seed)
        with quiet_progress_bars(not config.training.show_progress_bar):
            data = self.prepare_data(config)
            evaluator = self.create_evaluator()
        return run_training(config, self.model, self.loss, self.miner, data, evaluator=evaluator,
                            accelerator=accelerator)


def qualified_name(obj: Any) -> str:
    """``pkg.module.Class`` of a loss or miner (the PML object itself when adapted)."""
    if isinstance(obj, PMLLossAdapter):
        obj = obj.loss
    elif isinstance(obj, PMLMinerAdapter):
        obj = obj.miner
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def loss_display_name(loss: Any) -> str:
    return qualified_name(loss).rsplit(".", 1)[-1]
