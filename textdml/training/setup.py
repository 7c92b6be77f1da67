"""``build_run``: the one place that builds a run (model, data, loss, miner, task, loader).

``train(config)`` builds everything from the config; ``Trainer`` brings its model, loss and miner
built; the preflight builds the same parts without a loader. All three come here, so they agree
on what the data must hold (the loss's input kinds) and how it is read::

    parts = build_run(config, dataset=rows)       # config -> RunParts
    result = fit(parts, accelerator, callbacks)   # textdml.training.loop
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datasets import Dataset, IterableDataset
from torch.utils.data import DataLoader

from textdml.config import RunConfig
from textdml.data.pipeline import TrainingData, create_dataloader, input_kinds, prepare_data
from textdml.errors import ConfigError
from textdml.losses.pml_adapter import PMLLossAdapter
from textdml.miners.pml_adapter import PMLMinerAdapter
from textdml.models.saving import is_image_text
from textdml.training.build import build_loss, build_miner, create_model
from textdml.training.tasks import create_task

Evaluator = Any  # a callable ``model -> dict of metrics``


@dataclass
class RunParts:
    """What a run trains: built once by ``build_run``, read by the loop and the preflight."""

    config: RunConfig
    model: Any  # an Embedder or a DualEncoder
    loss: Any
    miner: Any
    task: Any  # textdml.training.tasks.Task
    data: TrainingData
    evaluator: Evaluator | None = None
    dataloader: DataLoader | None = None
    sampler: Any = None  # the loader's sampler, told each epoch (None: streaming or sequential)


def build_run(config: RunConfig, *, dataset: Dataset | IterableDataset | None = None, model: Any = None,
              evaluator: Evaluator | None = None, loss: Any = None, miner: Any = None,
              data: TrainingData | None = None, accelerator: Any = None, loader: bool = True) -> RunParts:
    """Build the parts of a run; what is given is used as it is.

    Args:
        config: the run config.
        dataset: the training rows (default: loaded from ``config.train``, or mined when ``config.mine``).
        model: the model (default: built from ``config.model``).
        evaluator: kept with the parts (a callable ``model -> metrics``).
        loss / miner: built objects (``Trainer``); default: built from ``config.loss`` / ``config.miner``.
        data: prepared training data (the preflight of a run passes the run's).
        accelerator: mining before training needs it (``config.mine``); without it nothing is mined.
        loader: build the data loader (the preflight draws its batch itself).
    """
    check_trainable_backend(config)
    model = model if model is not None else create_model(config.model)
    check_adapter_save(config, model)
    if data is None:
        data = build_data(config, model, loss, dataset, accelerator)
    if loss is None:
        loss = build_loss(config.loss, embedding_size=getattr(model, "embedding_dim", None),
                          num_classes=len(data.label_ids) if data.label_ids else None, model=model)
    if miner is None:
        miner = build_miner(config.miner)
    task = create_task(model, loss, miner)
    task.prepare_data(data, config.training.seed)  # score ranges, raw texts for a teacher, input noise
    parts = RunParts(config, model, loss, miner, task, data, evaluator)
    if loader:
        parts.dataloader, parts.sampler = create_dataloader(data, config, model)
    return parts


def build_data(config: RunConfig, model: Any, loss: Any = None, dataset: Dataset | IterableDataset | None = None,
               accelerator: Any = None) -> TrainingData:
    """The training data of a run, read for its loss (a given one, else the configured class).

    With ``config.mine`` and an ``accelerator`` (training; not the preflight), the train pairs get
    hard negatives mined with the starting model first.
    """
    if dataset is None and config.mine is not None and accelerator is not None and not is_image_text(model):
        dataset = mine_before_training(config, model, accelerator)
    return prepare_data(config, model, run_input_kinds(config, loss), run_loss_name(config, loss), dataset)


def check_adapter_save(config: RunConfig, model: Any) -> None:
    """An adapter save of a dual encoder needs a base it can rebuild: fail now, not at the final save."""
    if config.training.save_adapter and is_image_text(model):
        from textdml.models.adapters import check_reproducible_base

        check_reproducible_base(getattr(model, "base_spec", None) or {})


def run_input_kinds(config: RunConfig, loss: Any = None) -> tuple[str, ...]:
    """What the run's data may hold: the given loss's kinds, else those of the configured loss class."""
    return input_kinds(type(loss)) if loss is not None else loss_input_kinds(config.loss)


def run_loss_name(config: RunConfig, loss: Any = None) -> str:
    """The loss as error messages name it: the config's name, or the given object's class."""
    if loss is not None:
        return loss_display_name(loss)
    return str(config.loss.get("name") or config.loss.get("target"))


def loss_input_kinds(spec: dict[str, Any]) -> tuple[str, ...]:
    """The input kinds of the loss class a config's ``loss`` section names."""
    from textdml.registry import LOSSES, import_component_class

    cls = import_component_class(spec["target"], "loss") if "target" in spec else LOSSES.get(spec["name"])
    return input_kinds(cls)


def mine_before_training(config: RunConfig, model: Any, accelerator: Any) -> Dataset:
    """Hard negatives for the train pairs, mined with the starting model (``config.mine``).

    The main process mines; the others then get its table (see ``mine_on_main_process``). A
    resumed run finds the table already mined for these weights and settings.
    """
    from textdml.mining.remine import mined_folder, mined_versions
    from textdml.mining.run import mine_on_main_process

    return mine_on_main_process(config, model, accelerator, mined_folder(config, 0),
                                config.training.show_progress_bar, own_versions=mined_versions(config))


def qualified_name(obj: Any) -> str:
    """``pkg.module.Class`` of a loss or miner (the PML object itself when adapted)."""
    if isinstance(obj, PMLLossAdapter):
        obj = obj.loss
    elif isinstance(obj, PMLMinerAdapter):
        obj = obj.miner
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def loss_display_name(loss: Any) -> str:
    return qualified_name(loss).rsplit(".", 1)[-1]


def check_trainable_backend(config: RunConfig) -> None:
    """An exported encoder (model.backend onnx / openvino) only encodes: training needs the torch weights."""
    if config.model.backend != "torch":
        raise ConfigError(f"model.backend={config.model.backend} encodes with an exported file, which cannot train: "
                          "train with model.backend=torch, then `textdml export` the trained model")
