"""A model card (README.md with Hub metadata) written next to every saved model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from textdml.config import RunConfig


def describe_data(config: RunConfig) -> str:
    sets = config.train if isinstance(config.train, list) else [config.train]
    return ", ".join(f"`{d.path}`" + (f" ({d.name})" if d.name else "") for d in sets)


def render_model_card(config: RunConfig, loss: Any, records: list[dict[str, Any]]) -> str:
    evaluation = {k: v for r in records for k, v in r.items() if k.startswith("eval_")}
    metadata = {
        "library_name": "sentence-transformers",
        "pipeline_tag": "sentence-similarity",
        "tags": ["sentence-transformers", "sentence-similarity", "feature-extraction", "textdml",
                 f"loss:{type(loss).__name__}"],
        "base_model": config.model.name_or_path if not Path(config.model.name_or_path).exists() else None,
    }
    metadata = {k: v for k, v in metadata.items() if v is not None}
    lines = [
        "---", yaml.safe_dump(metadata, sort_keys=False).strip(), "---", "",
        f"# {Path(config.training.output_dir).name}", "",
        f"A sentence embedding model fine-tuned with [textdml](https://pypi.org/project/textdml/) from "
        f"`{config.model.name_or_path}` with `{type(loss).__name__}`.", "",
        "## Usage", "", "```python", "from sentence_transformers import SentenceTransformer", "",
        'model = SentenceTransformer("path/to/this/model")',
        'embeddings = model.encode(["A sentence to embed", "Another one"])', "```", "",
        "## Training", "",
        f"- data: {describe_data(config)}",
        f"- loss: `{config.loss}`" + (f", miner: `{config.miner}`" if config.miner else ""),
        f"- batch size {config.training.batch_size}, learning rate {config.training.learning_rate}, "
        f"epochs {config.training.epochs}, max steps {config.training.max_steps}", "",
    ]
    if evaluation:
        lines += ["## Evaluation", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k.removeprefix('eval_')} | {v:.4f} |" for k, v in evaluation.items() if isinstance(v, float)]
        lines.append("")
    citation = getattr(loss, "citation", None)
    if citation:
        lines += ["## Citation", "", "```bibtex", citation.strip(), "```", ""]
    return "\n".join(lines)


def write_model_card(folder: Path, config: RunConfig, loss: Any, records: list[dict[str, Any]]) -> Path:
    path = Path(folder) / "README.md"
    path.write_text(render_model_card(config, loss, records))
    return path
