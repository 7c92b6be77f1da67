"""What a folder holds, read for the sparse model: which kind of model, where its transformer is, how it pools.

Kept apart from ``textdml.models.sparse`` so the folder checks run (and are tested) without
loading a model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from textdml.hub.layout import (
    DUAL_ADAPTER_CONFIG,
    DUAL_ENCODER_CONFIG,
    MODULES,
    SENTENCE_BERT_CONFIG,
    SPLADE_POOLING,
    is_sparse_model_folder,
)

FolderKind = Literal["sparse", "dense", "plain", "image_text"]
# Module types of a sparse folder that textdml reads (their class names; modules.json holds full paths).
SPARSE_TRANSFORMERS = ("MLMTransformer", "Transformer")


@dataclass(frozen=True)
class FolderLayout:
    """A model folder as the sparse model sees it.

    ``kind``: ``sparse`` (SparseEncoder layout), ``dense`` (a sentence-transformers embedding model),
    ``plain`` (a Hugging Face model folder) or ``image_text`` (a textdml dual encoder).
    """

    kind: FolderKind
    transformer_dir: Path
    description: str = ""
    max_seq_length: int | None = None
    pooling_strategy: Literal["max", "sum"] = "max"
    activation: Literal["relu", "log1p_relu"] = "relu"


def sparse_layout(folder: Path) -> FolderLayout:
    """Read ``folder``'s ``modules.json`` (if any); unsupported sparse modules are an error naming them."""
    folder = Path(folder)
    if (folder / DUAL_ENCODER_CONFIG).exists() or (folder / DUAL_ADAPTER_CONFIG).exists():
        return FolderLayout("image_text", folder, "a textdml dual encoder")
    modules_file = folder / MODULES
    if not modules_file.exists():
        return FolderLayout("plain", folder, "a Hugging Face model folder")
    try:
        modules = json.loads(modules_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{modules_file} is not valid JSON: {err}") from err
    names = [str(module.get("type", "")).rsplit(".", 1)[-1] for module in modules]
    transformer_entry = next((m for m, n in zip(modules, names) if n in SPARSE_TRANSFORMERS), None)
    transformer_dir = folder / transformer_entry.get("path", "") if transformer_entry else folder
    max_seq_length = read_max_seq_length(transformer_dir)
    if not is_sparse_model_folder(folder):
        return FolderLayout("dense", transformer_dir, f"sentence-transformers modules {names}",
                            max_seq_length=max_seq_length)
    if names != [names[0], SPLADE_POOLING] or names[0] not in SPARSE_TRANSFORMERS:
        raise ValueError(f"{modules_file}: textdml reads sparse models made of a masked-LM transformer and "
                         f"SpladePooling, this one has modules {names} (e.g. an inference-free Router / "
                         "SparseStaticEmbedding model or a SparseAutoEncoder): load it with sentence-transformers' "
                         "SparseEncoder instead")
    pooling_entry = modules[1]
    pooling_config_file = folder / pooling_entry.get("path", "") / "config.json"
    pooling_config = json.loads(pooling_config_file.read_text()) if pooling_config_file.exists() else {}
    return FolderLayout("sparse", transformer_dir, f"sentence-transformers modules {names}",
                        max_seq_length=max_seq_length,
                        pooling_strategy=pooling_config.get("pooling_strategy", "max"),
                        activation=pooling_config.get("activation_function", "relu"))


def read_max_seq_length(transformer_dir: Path) -> int | None:
    for name in (SENTENCE_BERT_CONFIG, "sentence_transformer_config.json"):
        file = transformer_dir / name
        if file.exists():
            return json.loads(file.read_text()).get("max_seq_length")
    return None
