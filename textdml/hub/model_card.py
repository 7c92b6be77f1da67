"""The model card (README.md: YAML metadata + Markdown) written next to every saved model.

Built with ``huggingface_hub.ModelCard`` / ``ModelCardData``, so the metadata is what the Hub
reads: the base model as a Hub id (never a local path), the datasets, ``model-index`` evaluation
results, the pipeline tag and a sentence-similarity widget. The body says how to load the model,
what it was trained on and how (loss, miner, hyperparameters, time, hardware, loss curve), what it
scored, with which library versions, and what to cite.
"""

from __future__ import annotations

import json
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textdml.config import DataConfig, RunConfig
from textdml.hub.base_model import hub_id_for, is_local_path, looks_like_hub_id, public_name, scrub_paths
from textdml.hub.layout import (
    MODEL_CARD,
    MODULES,
    OPEN_CLIP_WEIGHTS,
    SENTENCE_BERT_CONFIG,
    TEXTDML_CONFIG,
    is_adapter_save,
)
from textdml.redaction import redact

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

    from textdml.training.run_info import RunSummary

TEXTDML_CITATION = """@software{textdml,
  title = {textdml: deep metric learning for sentence and image-text embeddings},
  year = {2026},
  url = {https://pypi.org/project/textdml/}
}"""
# Training settings that say where things were on the training machine, or may hold secrets.
PRIVATE_TRAINING_KEYS = ("output_dir", "resume_from_checkpoint", "report_to", "tracker_project", "tracker_kwargs",
                         "callbacks", "num_workers", "show_progress_bar", "push_to_hub", "hub_private")
# How the run was managed (where to resume, whether to replace a folder, what to draw): not how the model was trained.
RUN_MANAGEMENT_KEYS = ("run_name", "overwrite_output_dir", "force_resume", "preflight", "report")
# Metric name parts written in capitals on the card (ndcg@10 -> NDCG@10).
METRIC_ACRONYMS = ("ndcg", "mrr", "map", "mse", "mae", "auc", "ap", "f1", "i2t", "t2i")
VERSIONED_PACKAGES = ("textdml", "sentence-transformers", "transformers", "torch", "accelerate", "peft", "datasets",
                      "huggingface_hub", "open_clip_torch", "tokenizers")
MAX_CURVE_ROWS = 20
ADAPTER_USAGE = "The repository holds a PEFT adapter, loaded on top of its base model (`peft` must be installed). "
ADAPTER_KEPT = "this repository holds the adapter (PEFT format) and loads it on top of the base model."
ADAPTER_MERGED = "they are merged into the weights saved here."


# ---------------------------------------------------------------------- what the run was
def train_sets(config: RunConfig) -> list[DataConfig]:
    return config.train if isinstance(config.train, list) else [config.train]


def describe_dataset(data: DataConfig) -> str:
    """A public name for a data set: a Hub id, a textdml built-in, or a local file's name."""
    if data.path.startswith("textdml:"):
        return {"textdml:wordnet": "WordNet 3.0 (textdml:wordnet)"}.get(data.path, data.path)
    name = public_name(data.path)
    return f"{name} ({data.name})" if data.name else name


DATA_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".arrow", ".txt", ".gz", ".zst")


def is_hub_dataset(path: str) -> bool:
    """``org/name`` that is neither a local path nor a data file name (``data/pairs.jsonl``)."""
    return looks_like_hub_id(path) and not path.lower().endswith(DATA_FILE_SUFFIXES)


def hub_datasets(config: RunConfig) -> list[str]:
    paths = [d.path for d in train_sets(config)] + ([config.eval.data.path] if config.eval.data else [])
    return list(dict.fromkeys(p for p in paths if is_hub_dataset(p)))


def base_model_id(config: RunConfig) -> str | None:
    """The Hub id of the model training started from (text models and towers read from one model)."""
    if config.model.kind == "dual" and config.model.dual is not None:
        dual = config.model.dual
        specs = [dual] if "kind" in dual else [dual.get("text") or {}, dual.get("image") or {}]
        for spec in specs:
            for key in ("name_or_path", "pretrained"):
                found = hub_id_for(spec.get(key)) if isinstance(spec.get(key), str) else None
                if found:
                    return found
        return None
    return hub_id_for(config.model.name_or_path)


def describe_base(config: RunConfig) -> str:
    if config.model.kind == "dual" and config.model.dual is not None:
        return ", ".join(f"{side}: {describe_tower(spec)}" for side, spec in tower_specs(config.model.dual))
    base = base_model_id(config)
    return f"[{base}](https://huggingface.co/{base})" if base else "a local model (no Hub id found)"


def tower_specs(dual: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    if "kind" in dual:
        return [("both towers", dual)]
    return [(side, dual[side]) for side in ("image", "text") if isinstance(dual.get(side), dict)]


def describe_tower(spec: dict[str, Any]) -> str:
    detail = next((spec[k] for k in ("arch", "name_or_path", "name", "target") if isinstance(spec.get(k), str)), None)
    kind = spec.get("kind", "?")
    return f"`{kind}` {public_name(detail)}" if detail else f"`{kind}`"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def saved_text_model(folder: Path) -> dict[str, Any]:
    """Embedding size, pooling, normalisation, max length and similarity of a saved text model."""
    info: dict[str, Any] = {}
    modules_file = folder / MODULES
    if not modules_file.exists():
        return info
    modules = json.loads(modules_file.read_text())
    for module in modules:
        kind = module["type"].rsplit(".", 1)[-1]
        config = folder / module.get("path", "") / "config.json"
        if kind == "Pooling" and config.exists():
            pooling = json.loads(config.read_text())
            info["dimension"] = pooling.get("word_embedding_dimension")
            info["pooling"] = next((k.removeprefix("pooling_mode_").removesuffix("_tokens") for k, v in pooling.items()
                                    if k.startswith("pooling_mode_") and v is True), None)
        elif kind == "Dense" and config.exists():
            info["dimension"] = json.loads(config.read_text()).get("out_features")
        elif kind == "Normalize":
            info["normalized"] = True
        elif kind == "SpladePooling" and config.exists():  # a sparse model: one weight per vocabulary token
            splade = json.loads(config.read_text())
            info["dimension"] = splade.get("embedding_dimension")
            info["pooling"] = f"SPLADE {splade.get('pooling_strategy')} of log(1 + {splade.get('activation_function')})"
    bert = folder / SENTENCE_BERT_CONFIG
    if bert.exists():
        info["max_seq_length"] = json.loads(bert.read_text()).get("max_seq_length")
    textdml_config = folder / TEXTDML_CONFIG
    if textdml_config.exists():
        info["similarity"] = json.loads(textdml_config.read_text()).get("similarity")
    return info


def evaluation_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if any(k.startswith("eval_") for k in r)]


def eval_metrics(record: dict[str, Any]) -> dict[str, float]:
    return {k.removeprefix("eval_"): v for k, v in record.items()
            if k.startswith("eval_") and isinstance(v, (int, float)) and not isinstance(v, bool)}


def final_evaluation(records: list[dict[str, Any]]) -> dict[str, float]:
    """The metrics of the last evaluation (the trained model's)."""
    evaluations = evaluation_records(records)
    return eval_metrics(evaluations[-1]) if evaluations else {}


def start_evaluation(records: list[dict[str, Any]]) -> dict[str, float]:
    """The metrics of the starting model (``training.eval_on_start``: logged at step 0), if it was evaluated."""
    evaluations = evaluation_records(records)
    if len(evaluations) < 2 or evaluations[0].get("step") != 0:
        return {}
    return eval_metrics(evaluations[0])


def metric_display_name(metric: str) -> str:
    """``ndcg@10`` -> ``NDCG@10``, ``i2t_recall@1`` -> ``I2T Recall@1``: the model-index ``name``."""
    def word(part: str) -> str:
        head, at, tail = part.partition("@")
        return (head.upper() if head in METRIC_ACRONYMS else head.capitalize()) + at + tail

    return " ".join(word(part) for part in metric.split("_") if part)


def metric_type(metric: str) -> str:
    """``ndcg@10`` -> ``ndcg_at_10``: the model-index ``type``, as MTEB results on the Hub spell it."""
    return metric.replace("@", "_at_")


def repo_slug(name: str) -> str:
    """A repository-like name for a run name: ``quickstart: MiniLM on WordNet`` -> ``quickstart-minilm-on-wordnet``."""
    return "-".join(re.findall(r"[a-z0-9._]+", name.lower())) or "textdml-model"


def run_name(config: RunConfig) -> str:
    """``training.run_name``, else the run folder's name (the card's and the report's title)."""
    return config.training.run_name or Path(config.training.output_dir).name or "textdml-model"


def loss_curve(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Training-loss rows, thinned to at most MAX_CURVE_ROWS (the last row always kept)."""
    rows = [r for r in records if "loss" in r]
    if len(rows) <= MAX_CURVE_ROWS:
        return rows
    stride = -(-len(rows) // MAX_CURVE_ROWS)
    thinned = rows[::stride]
    return thinned if thinned[-1] is rows[-1] else [*thinned, rows[-1]]


# ---------------------------------------------------------------------- metadata
def card_data(config: RunConfig, loss: Any, records: list[dict[str, Any]], summary: RunSummary | None,
              folder: Path) -> Any:
    from huggingface_hub import EvalResult, ModelCardData

    dual = config.model.kind == "dual"
    adapter = config.model.lora is not None
    kept_adapter = is_adapter_save(folder)
    name = run_name(config)
    tags = ["textdml", f"loss:{type(loss).__name__}"]
    if summary is not None and summary.miner is not None:
        tags.append(f"miner:{type(summary.miner).__name__}")
    sparse = config.model.kind == "sparse"
    if dual:
        tags += ["image-text", "clip", "vision"]
    elif sparse:  # sentence-transformers' own tags for a SparseEncoder
        tags += ["sentence-transformers", "sparse-encoder", "sparse", "splade", "feature-extraction"]
    else:
        tags += ["sentence-transformers", "sentence-similarity", "feature-extraction"]
    if adapter:
        tags += ["peft", config.model.lora.method]  # type: ignore[union-attr]
    results = final_evaluation(records)
    eval_name = describe_dataset(config.eval.data) if config.eval.data else "held-out data"
    eval_type = config.eval.data.path if config.eval.data and is_hub_dataset(config.eval.data.path) else eval_name
    eval_results = [
        EvalResult(task_type="zero-shot-image-classification" if "zero_shot" in metric else "information-retrieval",
                   dataset_type=eval_type, dataset_name=eval_name, metric_type=metric_type(metric),
                   metric_name=metric_display_name(metric), metric_value=round(value, 6),
                   dataset_split=config.eval.data.split if config.eval.data else None)
        for metric, value in results.items()
    ]
    extra: dict[str, Any] = {}
    if not dual and summary is not None and len(summary.widget_texts) >= 2:
        extra["widget"] = [{"source_sentence": summary.widget_texts[0], "sentences": summary.widget_texts[1:]}]
    base = base_model_id(config)
    if base and kept_adapter:
        extra["base_model_relation"] = "adapter"
    return ModelCardData(
        # An image-text adapter save loads in textdml only: no other library's name would be true.
        library_name=("pytorch" if kept_adapter else dual_library(config)) if dual else "sentence-transformers",
        pipeline_tag="zero-shot-image-classification" if dual else "feature-extraction" if sparse
        else "sentence-similarity",
        tags=tags, base_model=base, datasets=hub_datasets(config) or None,
        model_name=name, eval_results=eval_results or None, **extra,
    )


def dual_library(config: RunConfig) -> str:
    """A library the Hub knows that loads the folder: the whole model's own, else plain PyTorch."""
    kind = (config.model.dual or {}).get("kind")
    return {"open_clip": "open_clip", "hf_clip": "transformers", "hf_siglip": "transformers"}.get(kind, "pytorch")


# ---------------------------------------------------------------------- body
def usage_section(config: RunConfig, repo: str, folder: Path) -> list[str]:
    if config.model.kind == "dual":
        kind = (config.model.dual or {}).get("kind")
        loader = ("from textdml.models.loading import load_model", "load_model") if is_adapter_save(folder) \
            else ("from textdml.models import DualEncoder", "DualEncoder.from_pretrained")
        lines = ["## Usage", "", "With textdml:", "", "```python", loader[0], "",
                 f'model = {loader[1]}("{repo}")  # a local folder (snapshot_download the Hub repo)',
                 'image_vectors = model.encode_images(["cat.png"])',
                 'text_vectors = model.encode(["a photo of a cat"])', "```", ""]
        if kind == "open_clip":
            arch = (config.model.dual or {}).get("arch", "ARCH")
            lines += ["With open_clip (the folder holds an open_clip checkpoint):", "", "```python", "import open_clip",
                      "", f'model, _, preprocess = open_clip.create_model_and_transforms("{arch}", '
                      f'pretrained="{repo}/{OPEN_CLIP_WEIGHTS}")', "```", ""]
        elif kind in ("hf_clip", "hf_siglip"):
            lines += ["With transformers:", "", "```python", "from transformers import AutoModel, AutoProcessor", "",
                      f'model = AutoModel.from_pretrained("{repo}")',
                      f'processor = AutoProcessor.from_pretrained("{repo}")', "```", ""]
        return lines
    if config.model.kind == "sparse":
        return ["## Usage", "", "With sentence-transformers:", "", "```python",
                "from sentence_transformers import SparseEncoder", "", f'model = SparseEncoder("{repo}")',
                'query = model.encode_query(["A query"])', 'documents = model.encode_document(["A document", "Another"])',
                "scores = model.similarity(query, documents)", "```", "", "With textdml:", "", "```python",
                "from textdml.models.sparse import SparseEmbedder", "", f'model = SparseEmbedder.load("{repo}")',
                '[(token_ids, weights)] = model.encode_sparse(["A query"], kind="query")', "```", ""]
    lines = ["## Usage", "", "With sentence-transformers:", "", "```python",
             "from sentence_transformers import SentenceTransformer", "",
             f'model = SentenceTransformer("{repo}")',
             'embeddings = model.encode(["A sentence to embed", "Another one"])',
             "similarities = model.similarity(embeddings, embeddings)", "```", "",
             "With textdml:", "", "```python", "from textdml.models import Embedder", "",
             f'model = Embedder.from_pretrained("{repo}")',
             'embeddings = model.encode(["A sentence to embed", "Another one"])', "```", ""]
    if is_adapter_save(folder):
        lines += [ADAPTER_USAGE + "On an already loaded base: `SentenceTransformer(base).load_adapter(\"" + repo
                  + "\")`. `textdml merge` writes the merged full model.", ""]
    return lines


def model_details(config: RunConfig, folder: Path, summary: RunSummary | None) -> list[str]:
    rows = [("Base model", describe_base(config))]
    if config.model.kind != "dual":
        info = saved_text_model(folder)
        labels = (("dimension", "Embedding size"), ("pooling", "Pooling"), ("normalized", "Normalised"),
                  ("max_seq_length", "Max sequence length"), ("similarity", "Similarity"))
        rows += [(label, f"{info[key]}") for key, label in labels if info.get(key) is not None]
    if summary is not None and summary.total_parameters:
        rows.append(("Parameters", f"{summary.total_parameters:,} ({summary.trainable_parameters:,} trained)"))
    lines = ["## Model details", "", "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows], ""]
    lora = config.model.lora
    if lora is not None:
        method = {"lora": "LoRA", "dora": "DoRA", "ia3": "IA3"}[lora.method]
        settings = (f"rank {lora.r}, alpha {lora.alpha:g}, dropout {lora.dropout:g}, " if lora.method != "ia3" else "")
        targets = lora.target_modules or "all linear layers"
        where = ("" if config.model.kind != "dual" else " on both towers" if lora.tower == "both"
                 else f" on the {lora.tower} tower")
        kept = is_adapter_save(folder)
        lines += [f"**{method} adapters**{where} were trained instead of the full weights ({settings}targets: "
                  f"{targets}, through [peft](https://github.com/huggingface/peft)); "
                  + (ADAPTER_KEPT if kept else ADAPTER_MERGED), ""]
    return [*lines, *architecture_section(config, folder)]


def training_section(config: RunConfig, loss: Any, summary: RunSummary | None) -> list[str]:
    lines = ["## Training", "", "### Data", "", "| data set | rows | columns |", "|---|---|---|"]
    rows = summary.train_rows if summary is not None else []
    for i, data in enumerate(train_sets(config)):
        size = rows[i] if i < len(rows) else None
        columns = ", ".join(f"{role}: `{column}`" for role, column in data.columns.items()) or "by name"
        lines.append(f"| {describe_dataset(data)} | {'streamed' if size is None else f'{size:,}'} | {columns} |")
    lines.append("")
    lines += data_sample_section(summary)
    if config.eval.data is not None:
        size = f" ({summary.eval_size})" if summary is not None and summary.eval_size else ""
        lines += [f"Evaluation data: {describe_dataset(config.eval.data)}, split `{config.eval.data.split}`{size}.", ""]
    lines += ["### Loss" + (" and miner" if config.miner else ""), "",
              f"- loss: `{type(loss).__name__}` with `{settings(config.loss, loss)}`"]
    if config.miner:
        miner_name = type(summary.miner).__name__ if summary is not None and summary.miner is not None else "miner"
        lines.append(f"- miner: `{miner_name}` with `{settings(config.miner, summary.miner if summary else None)}`")
    lines += ["", *hyperparameter_section(config)]
    if summary is not None:
        lines += ["### Time and hardware", "", f"- training time: {summary.train_runtime:.1f} s for "
                  f"{summary.global_step:,} steps (evaluation and saving not counted)", f"- hardware: {summary.hardware}"]
        if summary.peak_memory_bytes is not None:
            lines.append(f"- {summary.peak_memory_kind}: {summary.peak_memory_bytes / 2**20:,.0f} MiB")
        lines.append("")
    return lines


def applicable_settings(config: RunConfig) -> dict[str, Any]:
    """The training settings that shaped this run: none about the machine, the run's management, or a
    part the run did not use (``m_per_class`` without the m-per-class sampler, ...)."""
    t = config.training
    unused = set(PRIVATE_TRAINING_KEYS) | set(RUN_MANAGEMENT_KEYS)
    if t.sampler != "m_per_class":
        unused.add("m_per_class")
    if not isinstance(config.train, list) or len(config.train) < 2:
        unused.add("multi_dataset_strategy")
    if not t.grad_cache:
        unused.add("mini_batch_size")
    if config.model.kind != "dual":
        unused.update(("image_lr", "text_lr", "logit_scale_lr"))
    if not t.save_steps:
        unused.add("save_total_limit")
    if config.eval.data is None:
        unused.update(("eval_steps", "eval_on_start", "metric_for_best_model"))
    if config.model.lora is None:
        unused.add("save_adapter")
    return {k: v for k, v in redact(dict(vars(t))).items() if k not in unused and v is not None}


def hyperparameter_section(config: RunConfig) -> list[str]:
    """The settings that differ from textdml's defaults, then the others folded away."""
    from textdml.config import TrainingConfig

    defaults = vars(TrainingConfig())
    values = applicable_settings(config)
    changed = {k: v for k, v in values.items() if k not in defaults or v != defaults[k]}
    others = {k: v for k, v in values.items() if k not in changed}

    def table(rows: dict[str, Any]) -> list[str]:
        return ["| name | value |", "|---|---|", *[f"| {key} | {value} |" for key, value in rows.items()], ""]

    lines = ["### Hyperparameters", ""]
    if changed:
        lines += ["Set for this run (the others are textdml's defaults):", "", *table(changed)]
    if others:
        lines += ["<details><summary>Default hyperparameters</summary>", "", *table(others), "</details>", ""]
    return lines


def data_sample_section(summary: RunSummary | None) -> list[str]:
    """The first training rows and the tokens per text of each column, as sentence-transformers' cards show them."""
    if summary is None or not (summary.train_samples or summary.token_stats):
        return []
    lines: list[str] = []
    if summary.token_stats:
        lines += [f"Tokens per text (first {summary.token_stat_rows:,} rows, before truncation):", "",
                  "| column | min | mean | max |", "|---|---|---|---|"]
        lines += [f"| `{column}` | {low} | {mean:.1f} | {high} |"
                  for column, (low, mean, high) in summary.token_stats.items()]
        lines.append("")
    if summary.train_samples:
        columns = list(dict.fromkeys(c for row in summary.train_samples for c in row))
        lines += ["Samples:", "", "| " + " | ".join(f"`{c}`" for c in columns) + " |",
                  "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(table_cell(row.get(c, "")) for c in columns) + " |"
                  for row in summary.train_samples]
        lines.append("")
    return lines


def table_cell(text: str) -> str:
    """A value inside a Markdown table row: no pipe or line break may end the cell early."""
    return " ".join(text.split()).replace("|", "\\|")


def architecture_section(config: RunConfig, folder: Path) -> list[str]:
    """The saved module stack (modules.json), as sentence-transformers prints a model."""
    modules_file = folder / MODULES
    if config.model.kind == "dual" or not modules_file.exists():
        return []
    lines = ["### Architecture", "", "```", "SparseEncoder(" if config.model.kind == "sparse" else "SentenceTransformer("]
    for position, module in enumerate(json.loads(modules_file.read_text())):
        kind = module["type"].rsplit(".", 1)[-1]
        lines.append(f"  ({module.get('idx', position)}): {kind}({module_settings(folder, module)})")
    return [*lines, ")", "```", ""]


def module_settings(folder: Path, module: dict[str, Any]) -> str:
    """A module's saved settings in one line (false switches left out, as they say nothing)."""
    path = folder / module.get("path", "")
    kind = module["type"].rsplit(".", 1)[-1]
    values: dict[str, Any] = {}
    if kind in ("Transformer", "MLMTransformer"):
        for name in (SENTENCE_BERT_CONFIG, "config.json"):
            data = json.loads((path / name).read_text()) if (path / name).exists() else {}
            values |= {k: v for k, v in data.items() if k in ("max_seq_length", "do_lower_case")}
            if data.get("architectures"):
                values["architecture"] = data["architectures"][0]
    elif (path / "config.json").exists():
        values = {k: v for k, v in json.loads((path / "config.json").read_text()).items() if v is not False}
    return json.dumps(values) if values else ""


def settings(spec: dict[str, Any], component: Any = None) -> str:
    """The configured settings, completed with the component's own values of its other arguments."""
    values = dict(spec)
    if component is not None:
        import inspect

        for name in inspect.signature(type(component)).parameters:
            value = getattr(component, name, None)
            if name not in values and isinstance(value, (bool, int, float, str)):
                values[name] = value
    return json.dumps(redact(values), sort_keys=False, default=str)  # a key or token never reaches the card


def curve_section(records: list[dict[str, Any]]) -> list[str]:
    rows = loss_curve(records)
    if not rows:
        return []
    lines = ["### Loss curve", "", "| step | epoch | loss | learning rate |", "|---|---|---|---|"]
    lines += [f"| {r['step']} | {r.get('epoch', '')} | {r['loss']:.4f} | {r.get('lr', 0):.2e} |" for r in rows]
    return [*lines, ""]


def evaluation_section(records: list[dict[str, Any]], config: RunConfig | None = None) -> list[str]:
    results = final_evaluation(records)
    if not results:
        return []
    where = ""
    if config is not None and config.eval.data is not None:
        where = f" on {describe_dataset(config.eval.data)}, split `{config.eval.data.split}`"
    lines = ["## Evaluation", ""]
    base = start_evaluation(records)
    if base:
        final_step = evaluation_records(records)[-1].get("step")
        lines += [f"The starting model (step 0) and the trained model (step {final_step}){where}:", "",
                  "| metric | base model | trained | change |", "|---|---|---|---|"]
        lines += [f"| {metric_display_name(m)} | {base[m]:.4f} | {v:.4f} | {v - base[m]:+.4f} |" if m in base
                  else f"| {metric_display_name(m)} | | {v:.4f} | |" for m, v in results.items()]
    else:
        lines += [f"The trained model{where}:", "", "| metric | value |", "|---|---|"]
        lines += [f"| {metric_display_name(metric)} | {value:.4f} |" for metric, value in results.items()]
    history = [r for r in evaluation_records(records) if r.get("step") != 0 or not base]
    if len(history) > 1:
        metric = next(iter(results))
        lines += ["", f"`{metric}` during training: "
                  + ", ".join(f"step {r['step']}: {r.get('eval_' + metric, float('nan')):.4f}" for r in history)]
    return [*lines, ""]


def citation_section(loss: Any, summary: RunSummary | None) -> list[str]:
    from textdml.regularizers.attach import loss_citations

    entries = [TEXTDML_CITATION]
    citations = [*loss_citations(loss), getattr(summary.miner if summary is not None else None, "citation", None)]
    for citation in citations:  # the loss's, its regularizers', the miner's
        if citation and citation.strip() not in entries:
            entries.append(citation.strip())
    return ["## Citation", "", "```bibtex", "\n\n".join(entries), "```", ""]


def custom_code_section(config: RunConfig, folder: Path) -> list[str]:
    """trust_remote_code: the model's own Python files were copied into the save; say so, and that they run."""
    code_files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.py")) if config.model.trust_remote_code else []
    if not code_files:
        return []
    return ["## Custom code", "",
            f"This model runs its own Python code ({', '.join(f'`{f}`' for f in code_files)}), copied here "
            f"from {describe_base(config)} because it was trained with `trust_remote_code=True`. Loading "
            "it needs `trust_remote_code=True`, which runs those files: read them first.", ""]


def versions_section() -> list[str]:
    return ["## Framework versions", "", *[f"- {name}: {version}" for name, version in library_versions().items()], ""]


# ---------------------------------------------------------------------- the card
def create_model_card(config: RunConfig, loss: Any, records: list[dict[str, Any]],
                      summary: RunSummary | None = None, folder: str | Path = ".", repo_id: str | None = None) -> ModelCard:
    """The card of a trained model as a ``huggingface_hub.ModelCard`` (metadata + Markdown)."""
    from huggingface_hub import ModelCard

    folder = Path(folder)
    data = card_data(config, loss, records, summary, folder)
    dual = config.model.kind == "dual"
    kind = "An image-text" if dual else "A sentence"
    repo = repo_id or f"path/to/{repo_slug(data.model_name)}"
    body = [
        f"# {data.model_name}", "",
        f"{kind} embedding model trained with [textdml](https://pypi.org/project/textdml/) from "
        f"{describe_base(config)} with `{type(loss).__name__}`.", "",
        *model_details(config, folder, summary), *usage_section(config, repo, folder),
        *evaluation_section(records, config), *training_section(config, loss, summary), *curve_section(records),
        *custom_code_section(config, folder), *versions_section(), *citation_section(loss, summary),
    ]
    text = f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body)
    text = scrub_paths(text, local_paths(config))
    return ModelCard(text)


def local_paths(config: RunConfig) -> list[str]:
    """Every path of the config that points into the training machine."""
    paths = [config.training.output_dir, config.model.name_or_path, *(d.path for d in train_sets(config)),
             str(Path.cwd())]
    if config.eval.data is not None:
        paths.append(config.eval.data.path)

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, str) and is_local_path(value):
            paths.append(value)

    walk(config.model.dual or {})
    return [p for p in paths if p and is_local_path(str(p))]


def render_model_card(config: RunConfig, loss: Any, records: list[dict[str, Any]],
                      summary: RunSummary | None = None, folder: str | Path = ".") -> str:
    return str(create_model_card(config, loss, records, summary, folder))


def write_model_card(folder: Path, config: RunConfig, loss: Any, records: list[dict[str, Any]],
                     summary: RunSummary | None = None) -> Path:
    path = Path(folder) / MODEL_CARD
    path.write_text(render_model_card(config, loss, records, summary, folder))
    return path


def merged_card(text: str) -> str:
    """The card of an adapter save, rewritten for the full model that ``textdml merge`` made of it."""
    from huggingface_hub import ModelCard

    card = ModelCard(text)
    if getattr(card.data, "base_model_relation", None) == "adapter":
        del card.data.base_model_relation
    card.text = "\n".join(line for line in card.text.replace(ADAPTER_KEPT, ADAPTER_MERGED).split("\n")
                          if not line.startswith(ADAPTER_USAGE))
    return str(card)
