"""Run configuration: dataclasses are the schema, YAML holds the values, ``key=value`` overrides.

Unknown keys are errors with the closest valid names. Components (loss, miner) are picked by
registry name with their arguments beside it: ``loss: {name: proxy_anchor, margin: 0.1}``, or
``target: my_pkg.MyLoss`` for user code.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from textdml.registry import did_you_mean


class ConfigError(ValueError):
    """A recipe or override that does not fit the schema."""


@dataclass
class ModelConfig:
    """The embedder to train (see ``Embedder.from_pretrained``)."""

    name_or_path: str = "sentence-transformers/all-MiniLM-L6-v2"
    # text: an Embedder from name_or_path. dual: an image tower + a text tower, described by
    # `dual` (see textdml.models.create_dual_encoder), or loaded from name_or_path when `dual` is unset.
    kind: Literal["text", "dual"] = "text"
    dual: dict[str, Any] | None = None
    pooling: Literal["mean", "cls", "max", "last_token", "weighted_mean"] | None = None
    normalize: bool | None = None
    max_seq_length: int | None = None
    dense_dim: int | None = None
    similarity: Literal["cosine", "dot"] | None = None
    trust_remote_code: bool = False
    # Weights dtype. bfloat16 halves weight and activation memory; AdamW then updates in bfloat16,
    # which loses small updates: keep float32 weights with mixed_precision=bf16 unless memory-bound.
    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    # Recompute activations in backward: ~30% slower steps, much less activation memory.
    gradient_checkpointing: bool = False
    # LoRA adapters via peft, e.g. {r: 8, alpha: 16}; merged into the weights on save.
    lora: dict | None = None


@dataclass
class DataConfig:
    """Where rows come from (see ``textdml.data.loading.load_data``) and which column plays which role."""

    path: str = ""
    name: str | None = None
    split: str = "train"
    data_files: Any = None
    streaming: bool = False
    max_rows: int | None = None
    columns: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalConfig:
    """Held-out data to evaluate on: pairs give retrieval metrics, labelled rows open-set metrics."""

    data: DataConfig | None = None
    max_corpus: int | None = None
    batch_size: int = 64


@dataclass
class TrainingConfig:
    output_dir: str = "runs/textdml"
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 32
    learning_rate: float = 2e-5
    weight_decay: float = 0.01
    # Dual encoders: a learning rate per tower and for the logit scale / bias (default: learning_rate).
    image_lr: float | None = None
    text_lr: float | None = None
    logit_scale_lr: float | None = None
    warmup_ratio: float = 0.1
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = 1.0
    # "auto": bf16 where the GPU has it, fp32 on CPU.
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    seed: int = 42
    # no_duplicates: no text twice in a batch (a duplicate would be its own false negative);
    # m_per_class: m rows of each class per batch (miners, pair and proxy losses on labelled data).
    sampler: Literal["random", "sequential", "no_duplicates", "m_per_class"] = "random"
    m_per_class: int = 4
    # Several train sets: one data set per batch, picked in turn or in proportion to its size.
    multi_dataset_strategy: Literal["round_robin", "proportional"] = "proportional"
    # Batches of at most this many tokens (rows x longest row), length-bucketed: replaces batch_size.
    max_tokens_per_batch: int | None = None
    # Sort a batch's texts by length and pad blocks of this many rows separately: much less padding
    # goes through the encoder (same results up to float rounding); null pads each role as a whole.
    bucket_rows: int | None = 32
    # GradCache: embed the batch in mini-batches without graph, then backpropagate mini-batch by
    # mini-batch; the batch size (and in-batch negatives) is then not bound by activation memory.
    # mini_batch_size null = picked by the memory planner for this device.
    grad_cache: bool = False
    mini_batch_size: int | None = None
    # torch.compile the encoder: faster steps after a compile of a minute or more.
    compile: bool = False
    logging_steps: int = 10
    eval_steps: int | None = None
    save_steps: int | None = None
    save_total_limit: int | None = 2
    metric_for_best_model: str | None = None
    resume_from_checkpoint: str | None = None
    num_workers: int = 0
    show_progress_bar: bool = True
    # Check the data, loss and memory on a sample before the first step (`textdml check`, brief);
    # errors stop the run. Costs a few forward passes.
    preflight: bool = True
    # Write <output_dir>/report.html at the end (`textdml report`): plots of the loss, metrics and health.
    report: bool = True


@dataclass
class IndexConfig:
    """The Qdrant collection: embedded local mode with ``path``, a server with ``url``."""

    collection: str = "textdml"
    path: str | None = "qdrant_data"
    url: str | None = None
    api_key: str | None = None
    batch_size: int = 256
    recreate: bool = False
    id_field: str = "id"
    text_field: str = "text"


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: DataConfig | list[DataConfig] = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    loss: dict[str, Any] = field(default_factory=lambda: {"name": "info_nce"})
    miner: dict[str, Any] | None = None
    training: TrainingConfig = field(default_factory=TrainingConfig)
    index: IndexConfig = field(default_factory=IndexConfig)


def load_run_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML recipe, apply ``dotted.key=value`` overrides, validate, return a ``RunConfig``."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    for override in overrides or []:
        apply_override(raw, override)
    config = from_dict(RunConfig, raw, "config")
    validate(config)
    return config


def apply_override(raw: dict[str, Any], override: str) -> None:
    """``training.batch_size=64`` -> ``raw["training"]["batch_size"] = 64`` (values parsed as YAML)."""
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} must look like section.key=value")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
    node[parts[-1]] = yaml.safe_load(value)


def from_dict(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys are errors naming the closest field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"unknown key {where}.{key}: {did_you_mean(key, list(fields))}")
        kwargs[key] = convert(hints[key], value, f"{where}.{key}")
    return cls(**kwargs)


def convert(hint: Any, value: Any, where: str) -> Any:
    """Check / convert one value against its type hint."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return convert(arg, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin is Literal:
        if value is False and "no" in args:  # YAML 1.1 reads a bare `no` as false
            value = "no"
        if value not in args:
            raise ConfigError(f"{where} must be one of {list(args)}, got {value!r}")
        return value
    if hint is Any:
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [convert(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)] if args else value
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def validate(config: RunConfig) -> None:
    """Checks that need more than one field, or the registries."""
    from textdml.registry import LOSSES, MINERS

    check_component(config.loss, LOSSES, "loss")
    if "lr" in config.loss:
        config.loss["lr"] = convert(float, config.loss["lr"], "config.loss.lr")
    if config.miner is not None:
        check_component(config.miner, MINERS, "miner")
    t = config.training
    for name in ("batch_size", "epochs", "gradient_accumulation_steps", "logging_steps"):
        if getattr(t, name) < 1:
            raise ConfigError(f"training.{name} must be >= 1, got {getattr(t, name)}")
    if t.learning_rate <= 0:
        raise ConfigError(f"training.learning_rate must be > 0, got {t.learning_rate}")
    if t.sampler == "m_per_class" and t.batch_size % t.m_per_class:
        raise ConfigError(f"training.batch_size ({t.batch_size}) must be a multiple of training.m_per_class ({t.m_per_class})")
    train_sets = config.train if isinstance(config.train, list) else [config.train]
    if not train_sets:
        raise ConfigError("train is an empty list: name at least one training data set")
    for i, data in enumerate(train_sets):
        if not data.path:
            where = "train.path" if not isinstance(config.train, list) else f"train[{i}].path"
            raise ConfigError(f"{where} is empty: name the training data (a file, a Hub id or textdml:wordnet)")
    if t.grad_cache and t.gradient_accumulation_steps > 1:
        raise ConfigError("training.grad_cache replaces gradient accumulation: use a larger training.batch_size "
                          "instead of training.gradient_accumulation_steps")


def check_component(spec: dict[str, Any], registry: Any, section: str) -> None:
    if not isinstance(spec, dict):
        raise ConfigError(f"{section} must be a mapping like {{name: ...}}, got {spec!r}")
    if ("name" in spec) == ("target" in spec):
        raise ConfigError(f"{section} needs exactly one of 'name' (a registry name) or 'target' (a dotted class path)")
    if "name" in spec and spec["name"] not in registry:
        raise ConfigError(f"unknown {section} {spec['name']!r}: {did_you_mean(str(spec['name']), registry.names())}")


def to_dict(config: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)
