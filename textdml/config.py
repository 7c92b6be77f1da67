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

from textdml.errors import ConfigError  # defined there, re-exported here (``textdml.config.ConfigError``)
from textdml.mining.settings import MiningSettings
from textdml.registry import did_you_mean

# Names people bring from peft, PEFT-style recipes or other trainers -> the textdml key they mean.
KEY_ALIASES = {"rank": "r", "lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "modules": "target_modules",
               "target": "target_modules", "type": "method", "peft_type": "method", "use_dora": "method"}


@dataclass
class AdapterConfig:
    """Adapters trained instead of the whole encoder (``model.lora``), through ``peft``.

    ``method`` picks LoRA, DoRA (LoRA with a learned magnitude per output) or IA3 (learned scaling
    vectors: far fewer parameters). ``target_modules`` are module-name suffixes (``[query, value]``);
    null means every linear layer (LoRA / DoRA) or peft's default for the architecture (IA3).
    """

    method: Literal["lora", "dora", "ia3"] = "lora"
    r: int = 8
    alpha: float = 16
    dropout: float = 0.1
    target_modules: list[str] | str | None = None
    # IA3 only: which of target_modules are feed-forward layers (scaled on their input, not output).
    feedforward_modules: list[str] | None = None
    # Dual encoders: the tower(s) that get adapters; the rest of the model trains as configured.
    tower: Literal["text", "image", "both"] = "text"


@dataclass
class ModelConfig:
    """The embedder to train (see ``Embedder.from_pretrained``)."""

    name_or_path: str = "sentence-transformers/all-MiniLM-L6-v2"
    # text: an Embedder from name_or_path. dual: an image tower + a text tower, described by
    # `dual` (see textdml.models.create_dual_encoder), or loaded from name_or_path when `dual` is unset.
    # sparse: a SPLADE model (textdml.models.sparse.SparseEmbedder) started from name_or_path (any text
    # encoder: a model without an MLM head gets one tied to its word embeddings); a sparse loss trains it.
    kind: Literal["text", "dual", "sparse"] = "text"
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
    # Adapters via peft, e.g. {method: lora, r: 8, alpha: 16}; merged into the weights on save unless
    # training.save_adapter keeps them as a PEFT adapter.
    lora: AdapterConfig | None = None
    # Keep this many transformer layers, spread evenly (a distillation student from its teacher).
    num_layers: int | None = None
    # Texts put before inputs by role, e.g. {query: "query: ", document: "passage: "}: anchors are
    # queries; positives, negatives and indexed documents are documents (training, eval, index,
    # search, mining). Saved with the model for sentence-transformers. null: the model's own.
    prompts: dict[str, str] | None = None
    # What encodes in eval / index / search / mine with --model: the torch weights, or the ONNX
    # (onnxruntime) / OpenVINO file `textdml export` wrote into that folder (faster on CPU; int8 if
    # exported so). backend_file picks another file of the folder, e.g. onnx/model.onnx. Training needs torch.
    backend: Literal["torch", "onnx", "openvino"] = "torch"
    backend_file: str | None = None


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
    # Matryoshka sizes to score beside the full vectors (metrics <name>_dim<d>_...), e.g. [128, 64].
    truncate_dims: list[int] | None = None


@dataclass
class TrainingConfig:
    output_dir: str = "runs/textdml"
    # The run's name in the model card, the report and the trackers (default: output_dir's folder name).
    run_name: str | None = None
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
    # Evaluate the starting model too (logged at step 0): the report and the card then compare it with
    # the trained one. Costs one evaluation; never a candidate for the best model.
    eval_on_start: bool = False
    save_steps: int | None = None
    save_total_limit: int | None = 2
    metric_for_best_model: str | None = None
    resume_from_checkpoint: str | None = None
    # A folder holding another run (or, when not resuming, this run's checkpoints) is an error
    # unless this is true: then the old run is replaced, kept aside until this run saves its first
    # checkpoint (and put back if this run fails before).
    overwrite_output_dir: bool = False
    # Resume a checkpoint written by a different config (e.g. more max_steps): not bitwise the same run.
    force_resume: bool = False
    num_workers: int = 0
    show_progress_bar: bool = True
    # ANCE-style: every N steps, mine hard negatives again with the current model (needs `mine`).
    remine_every: int | None = None
    # With model.lora: save the adapter in PEFT format (adapter_config.json + adapter_model.safetensors,
    # a few MB) beside a reference to its base, instead of merged full weights.
    save_adapter: bool = False
    # Experiment trackers through Accelerate (tensorboard, wandb, mlflow, trackio, comet_ml, aim,
    # clearml, dvclive, swanlab). null: TensorBoard when it is installed; [] logs to metrics.jsonl only.
    report_to: list[str] | str | None = None
    # The tracker project (W&B project, MLflow experiment, TensorBoard folder); runs are named after output_dir.
    tracker_project: str = "textdml"
    # Extra init arguments per tracker, e.g. {wandb: {entity: my-team, mode: offline}}.
    tracker_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Dotted paths of callback classes (textdml.training.callbacks.Callback) built with no arguments.
    callbacks: list[str] = field(default_factory=list)
    # A Hub repo id (namespace/name): push the final model there after training (see `textdml push`).
    push_to_hub: str | None = None
    hub_private: bool = False
    # Check the data, loss and memory on a sample before the first step (`textdml check`, brief);
    # errors stop the run. Costs a few forward passes.
    preflight: bool = True
    # Write <output_dir>/report.html at the end (`textdml report`): plots of the loss, metrics and health.
    report: bool = True


@dataclass
class IndexConfig:
    """The vector index: Qdrant Edge in the folder ``path`` (default), or a Qdrant server at ``url``."""

    collection: str = "textdml"
    path: str | None = "qdrant_data"
    url: str | None = None
    # Prefer the QDRANT_API_KEY environment variable: a key in a recipe ends up in version control.
    api_key: str | None = None
    batch_size: int = 1024
    recreate: bool = False
    id_field: str = "id"
    text_field: str = "text"
    # edge: Qdrant Edge in-process, a shard per collection under `path`. client: qdrant-client, a
    # server by `url` or its (slow, pure-Python) local mode by `path`.
    engine: Literal["edge", "client"] = "edge"
    # Seconds per server request: an unreachable index.url fails after this, never hangs.
    timeout: float = 5.0
    # Every run writes a new version; the alias `collection` moves to it when it is complete.
    versioned: bool = True
    swap: bool = True
    # Index, search or mine (mine.collection) although the collection was indexed by another model.
    force: bool = False
    # Texts per forward pass (batch_size documents are read, length-sorted and upserted together);
    # sorted texts pad little, so large batches pay: 256 encodes 1.45x faster than 64 (tiny model, CPU).
    encode_batch_size: int = 128
    # HNSW graph: more m / ef_construct = better recall, slower build, more memory. Collections under
    # hnsw_threshold points get no graph: exact search is fast enough there (see README, Vector index).
    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    hnsw_threshold: int = 20000
    # Search-time candidate list: higher = better recall, slower queries. 256: recall@10 0.984 at 2.5 ms per
    # query over 100k points of the hardest vectors measured (a random tiny BERT's); 128 gave 0.963.
    search_ef: int | None = 256
    # Original vectors memory-mapped from disk: less RAM, slower search unless quantized.
    on_disk: bool = False
    # Compressed vectors searched first (scalar 4x, binary 32x, product 16x smaller), the originals
    # rescore `oversampling` x top_k candidates.
    quantization: Literal["none", "scalar", "binary", "product"] = "none"
    rescore: bool = True
    oversampling: float | None = 2.0
    # Payload field -> index type (keyword, integer, float, bool, text, datetime, uuid): fast filters.
    payload_indexes: dict[str, str] = field(default_factory=dict)
    # Matryoshka size: store the first `dim` coordinates of each vector, re-normalised (e.g. 128 of
    # 384: 3x less memory, some quality lost; `textdml eval --dims` measures how much). The version
    # records it and search cuts queries the same way. null: the model's full vectors.
    dim: int | None = None
    # Hybrid collections: also store a sparse vector "sparse" per document. bm25: Qdrant Edge's BM25,
    # computed in this process for both engines (a server stores the same vectors); or a sparse model
    # folder (SparseEmbedder). The version records it; search defaults to --mode hybrid there.
    sparse: str | None = None
    # BM25 settings (index.sparse=bm25): k (tf saturation), b (length normalisation), avg_len, language.
    bm25: dict[str, Any] = field(default_factory=dict)
    # How hybrid search merges the dense and sparse rankings: rrf (reciprocal rank) or dbsf (scores
    # normalised per leg). fusion_weights: [dense, sparse]; null = equal.
    fusion: Literal["rrf", "dbsf"] = "rrf"
    fusion_weights: list[float] | None = None
    rrf_k: int = 2
    # Candidates each leg hands the fusion (at least top_k): more finds documents only one leg ranks high.
    prefetch: int = 100


@dataclass
class MineConfig(MiningSettings):
    """Hard negatives mined by search (``textdml mine``; before ``train`` when set). The selection
    keys (num_negatives, range_min, range_max, margins, score caps, sampling_strategy, seed) are
    :class:`textdml.mining.MiningSettings`', named as sentence-transformers names them."""

    # Candidate documents besides the train positives (a text column of any data source).
    corpus: DataConfig | None = None
    corpus_column: str = "text"
    # A transformers sequence-classification model that rescores candidates (folder or Hub id).
    cross_encoder: str | None = None
    batch_size: int = 64
    # Where the mined table, its settings and the per-shard progress go (default <output_dir>/mined).
    output_dir: str | None = None
    # Search this Qdrant collection of the `index:` section (engine, path/url, HNSW) instead of exact
    # blocks in memory: mining sees what search will see. Missing: the corpus is indexed into a new
    # version first; re-mining (training.remine_every) writes a new version with the current weights.
    # None: exact in-memory search (sentence-transformers' negatives).
    collection: str | None = None
    # With a collection: exact (brute-force) search gives in-memory mining's negatives; false searches
    # HNSW with index.search_ef as deployed (collections under index.hnsw_threshold are exact anyway).
    exact: bool = False
    # Which ranking gives the candidates (needs mine.collection): dense (the model's), hybrid (the
    # dense and sparse legs fused by index.fusion; the collection needs index.sparse) or sparse.
    # Candidates keep the model's scores, so the margins compare them with the positives as in dense mode.
    mode: Literal["dense", "sparse", "hybrid"] = "dense"


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: DataConfig | list[DataConfig] = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    loss: dict[str, Any] = field(default_factory=lambda: {"name": "info_nce"})
    miner: dict[str, Any] | None = None
    training: TrainingConfig = field(default_factory=TrainingConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    mine: MineConfig | None = None


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
            hint = (f"did you mean {KEY_ALIASES[key]!r}?" if KEY_ALIASES.get(key) in fields
                    else did_you_mean(key, list(fields)))
            raise ConfigError(f"unknown key {where}.{key}: {hint}")
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
    from textdml.regularizers.base import regularizer_spec_error

    if problem := regularizer_spec_error(config.loss, "loss"):
        raise ConfigError(problem)
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
    if t.remine_every is not None and (t.remine_every < 1 or config.mine is None):
        raise ConfigError(f"training.remine_every={t.remine_every} needs to be >= 1 and a mine section "
                          "(what to mine, e.g. mine: {num_negatives: 1})")
    if config.mine is not None:
        try:
            config.mine.validate(prefix="mine.")
        except ValueError as error:
            raise ConfigError(str(error)) from None
        name = config.mine.collection
        if config.mine.mode not in ("dense", "sparse", "hybrid"):
            raise ConfigError(f"mine.mode must be dense, sparse or hybrid, got {config.mine.mode!r}")
        if config.mine.mode != "dense" and name is None:
            raise ConfigError(f"mine.mode={config.mine.mode} ranks by a collection's sparse vectors: set mine.collection "
                              "(a missing one is indexed with index.sparse, e.g. index.sparse=bm25)")
        if name is not None and (not name.strip() or "__" in name):
            raise ConfigError(f"mine.collection={name!r} must be a non-empty name without '__' (it separates "
                              "the parts of version names); e.g. mine.collection=train-corpus")

    from textdml.index.engine import Fusion

    try:
        Fusion(config.index.fusion, tuple(config.index.fusion_weights) if config.index.fusion_weights else None,
               config.index.rrf_k, config.index.prefetch)
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from None
    if config.index.sparse is not None and not str(config.index.sparse).strip():
        raise ConfigError("index.sparse is empty: set it to bm25 or a sparse model folder, or drop it (dense only)")
    from textdml.config_ranges import check_ranges

    check_ranges(config)
    if config.model.backend_file is not None and config.model.backend == "torch":
        raise ConfigError(f"model.backend_file={config.model.backend_file!r} names an exported file, but model.backend "
                          "is torch: set model.backend=onnx or openvino, or drop model.backend_file")
    lora = config.model.lora
    if lora is not None:
        if lora.r < 1:
            raise ConfigError(f"model.lora.r (the adapter rank) must be >= 1, got {lora.r}")
        if not 0 <= lora.dropout < 1:
            raise ConfigError(f"model.lora.dropout must be in [0, 1), got {lora.dropout}")
    check_sparse_run(config)
    if t.save_adapter and lora is None:
        raise ConfigError("training.save_adapter keeps trained adapters, but model.lora is not set: "
                          "add model.lora (e.g. model.lora.r=8) or drop training.save_adapter")
    if t.grad_cache and t.gradient_accumulation_steps > 1:
        raise ConfigError("training.grad_cache replaces gradient accumulation: use a larger training.batch_size "
                          "instead of training.gradient_accumulation_steps")


# ModelConfig keys of a dense text model that a sparse model has no use for (its vectors are its
# MLM head's vocabulary weights, scored by dot product).
DENSE_ONLY_MODEL_KEYS = ("pooling", "normalize", "dense_dim", "similarity", "lora", "num_layers", "dual")


def check_sparse_run(config: RunConfig) -> None:
    """A sparse model trains with a sparse loss (FLOPS keeps it sparse) and a sparse loss needs one."""
    from textdml.losses.needs import loss_needs
    from textdml.registry import LOSSES, import_component_class

    spec = config.loss
    loss_class = import_component_class(spec["target"], "loss") if "target" in spec else LOSSES.get(spec["name"])
    sparse_loss = loss_needs(loss_class).sparse_model
    loss_name = spec.get("name") or spec.get("target")
    if config.model.kind == "sparse":
        set_keys = [key for key in DENSE_ONLY_MODEL_KEYS if getattr(config.model, key) is not None]
        if set_keys:
            raise ConfigError(f"model.{set_keys[0]} does not apply to model.kind=sparse (a SPLADE model's vectors are "
                              "its vocabulary weights, scored by dot product): remove "
                              + ", ".join(f"model.{key}" for key in set_keys))
        if not sparse_loss:
            sparse_names = [name for name in LOSSES.names() if loss_needs(LOSSES.get(name)).sparse_model]
            raise ConfigError(f"loss {loss_name!r} does not train a sparse model (no FLOPS term keeps its vectors "
                              f"sparse): with model.kind=sparse use one of {sparse_names}")
    elif sparse_loss:
        raise ConfigError(f"loss {loss_name!r} trains a sparse (SPLADE) model, but model.kind is "
                          f"{config.model.kind!r}: set model.kind=sparse, or pick a loss for dense embeddings "
                          "(e.g. info_nce, margin_mse)")


def check_component(spec: dict[str, Any], registry: Any, section: str) -> None:
    if not isinstance(spec, dict):
        raise ConfigError(f"{section} must be a mapping like {{name: ...}}, got {spec!r}")
    if ("name" in spec) == ("target" in spec):
        raise ConfigError(f"{section} needs exactly one of 'name' (a registry name) or 'target' (a dotted class path)")
    if "name" in spec and spec["name"] not in registry:
        raise ConfigError(f"unknown {section} {spec['name']!r}: {did_you_mean(str(spec['name']), registry.names())}")
    if "target" in spec:  # only classes: a recipe's target is never an arbitrary callable (os.system)
        from textdml.registry import import_component_class

        try:
            import_component_class(spec["target"], section)
        except ValueError as err:
            raise ConfigError(str(err)) from err


def to_dict(config: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)
