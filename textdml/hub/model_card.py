"""A model card (README.md with Hub metadata) written next to every saved model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from textdml.config import RunConfig
from textdml.redaction import redact

TEXT_USAGE = ["## Usage", "", "```python", "from sentence_transformers import SentenceTransformer", "",
              'model = SentenceTransformer("path/to/this/model")',
              'embeddings = model.encode(["A sentence to embed", "Another one"])', "```", ""]
DUAL_USAGE = ["## Usage", "", "```python", "from textdml.models import DualEncoder", "",
              'model = DualEncoder.from_pretrained("path/to/this/model")',
              'image_vectors = model.encode_images(["cat.png"])',
              'text_vectors = model.encode(["a photo of a cat"])', "```", "",
              "Models whose two towers come from one open_clip model also load with "
              "`open_clip.create_model_and_transforms(arch, pretrained=\"path/to/this/model/open_clip_model.safetensors\")`.",
              ""]


def describe_model(config: RunConfig) -> str:
    if config.model.kind == "dual" and config.model.dual is not None:
        return json.dumps(redact(config.model.dual), sort_keys=True)
    return config.model.name_or_path


def describe_data(config: RunConfig) -> str:
    sets = config.train if isinstance(config.train, list) else [config.train]
    return ", ".join(f"`{d.path}`" + (f" ({d.name})" if d.name else "") for d in sets)


def render_model_card(config: RunConfig, loss: Any, records: list[dict[str, Any]],
                      code_files: list[str] | None = None) -> str:
    """The card's text; ``code_files``: the model's own Python files (saved with it), if any."""
    evaluation = {k: v for r in records for k, v in r.items() if k.startswith("eval_")}
    dual = config.model.kind == "dual"
    metadata = {
        "library_name": "textdml" if dual else "sentence-transformers",
        "pipeline_tag": "zero-shot-image-classification" if dual else "sentence-similarity",
        "tags": ["textdml", f"loss:{type(loss).__name__}"]
        + (["image-text", "clip"] if dual else ["sentence-transformers", "sentence-similarity", "feature-extraction"]),
        "base_model": None if dual or Path(config.model.name_or_path).exists() else config.model.name_or_path,
    }
    metadata = {k: v for k, v in metadata.items() if v is not None}
    lines = [
        "---", yaml.safe_dump(metadata, sort_keys=False).strip(), "---", "",
        f"# {Path(config.training.output_dir).name}", "",
        f"{'An image-text' if dual else 'A sentence'} embedding model fine-tuned with "
        f"[textdml](https://pypi.org/project/textdml/) from `{describe_model(config)}` with `{type(loss).__name__}`.", "",
        *(DUAL_USAGE if dual else TEXT_USAGE),
        "## Training", "",
        f"- data: {describe_data(config)}",
        f"- loss: `{redact(config.loss)}`" + (f", miner: `{redact(config.miner)}`" if config.miner else ""),
        f"- batch size {config.training.batch_size}, learning rate {config.training.learning_rate}, "
        f"epochs {config.training.epochs}, max steps {config.training.max_steps}", "",
    ]
    if evaluation:
        lines += ["## Evaluation", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k.removeprefix('eval_')} | {v:.4f} |" for k, v in evaluation.items() if isinstance(v, float)]
        lines.append("")
    if code_files:
        lines += ["## Custom code", "",
                  f"This model runs its own Python code ({', '.join(f'`{f}`' for f in code_files)}), copied here "
                  f"from `{describe_model(config)}` because it was trained with `trust_remote_code=True`. Loading "
                  "it needs `trust_remote_code=True`, which runs those files: read them first.", ""]
    from textdml.regularizers.attach import loss_citations

    citations = loss_citations(loss)
    if citations:
        lines += ["## Citation", ""] + [line for c in citations for line in ("```bibtex", c.strip(), "```", "")]
    return "\n".join(lines)


def write_model_card(folder: Path, config: RunConfig, loss: Any, records: list[dict[str, Any]]) -> Path:
    path = Path(folder) / "README.md"
    code_files = (sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*.py"))
                  if config.model.trust_remote_code else None)
    path.write_text(render_model_card(config, loss, records, code_files))
    return path
