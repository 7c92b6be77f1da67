"""What kind of model a run holds, the saved folder's file names, and saving and pushing a model.

A trained model is saved merged (full weights) or as an adapter (``keep_adapter``): a text
``Embedder`` writes PEFT's adapter files in the sentence-transformers layout, an image-text
``DualEncoder`` writes its trained weights beside a description of its base. Reading a folder back
is ``textdml.models.loading.load_model``.

This module sits below the model classes (it imports none of them: they call ``push_model``), and
above ``textdml.hub.push``, which uploads a folder and knows nothing of models.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from textdml.hub.layout import (  # noqa: F401  (the file names, re-exported: models code takes them from here)
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    DUAL_ADAPTER_CONFIG,
    DUAL_ENCODER_CONFIG,
    DUAL_ENCODER_HEAD,
    MODEL_CARD,
    MODEL_MARKERS,
    MODULES,
    OPEN_CLIP_CONFIG,
    OPEN_CLIP_WEIGHTS,
    SENTENCE_BERT_CONFIG,
    ST_CONFIG,
    TEXTDML_CONFIG,
    TOWER_CONFIG,
    TOWER_WEIGHTS,
    is_adapter_save,
    is_saved_model,
    is_sparse_model_folder,
)
from textdml.hub.push import PushResult, check_repo_id, push_to_hub

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)

ModelKind = Literal["text", "image_text", "sparse"]


# ---------------------------------------------------------------------- what a model is
def model_kind(model: Any) -> ModelKind:
    """``"image_text"`` for a dual encoder (an image tower beside the text one), ``"sparse"`` for a
    sparse (SPLADE) text model (``SparseEmbedder``), else ``"text"``.

    The one place that tells them apart: code outside ``textdml.models`` asks this, never
    ``hasattr(model, "embed_images")``.
    """
    if hasattr(model, "embed_images") or hasattr(model, "encode_images"):
        return "image_text"
    return "sparse" if hasattr(model, "encode_sparse") else "text"


def is_sparse(model: Any) -> bool:
    return model_kind(model) == "sparse"


def is_image_text(model: Any) -> bool:
    return model_kind(model) == "image_text"


# ---------------------------------------------------------------------- what a folder holds
def is_adapter_folder(folder: str | os.PathLike) -> bool:
    """A folder with PEFT's ``adapter_config.json`` (a text model's adapter save, or its encoder folder)."""
    return (Path(folder) / ADAPTER_CONFIG).exists()


def is_dual_adapter_folder(folder: str | os.PathLike) -> bool:
    return (Path(folder) / DUAL_ADAPTER_CONFIG).exists()


def is_dual_encoder_folder(folder: str | os.PathLike) -> bool:
    return (Path(folder) / DUAL_ENCODER_CONFIG).exists()


def adapter_base(folder: str | Path) -> str:
    """The base model an adapter folder refers to (``base_model_name_or_path``)."""
    config_file = Path(folder) / ADAPTER_CONFIG
    try:
        base = json.loads(config_file.read_text()).get("base_model_name_or_path")
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_file} is not valid JSON: {err}") from err
    if not base:
        raise ValueError(f"{config_file} names no base_model_name_or_path: set it to the folder or Hub id of the "
                         "model the adapter was trained on")
    return base


def transformer_folder(folder: Path) -> Path:
    """Where a sentence-transformers folder keeps its encoder (its root, or ``0_Transformer/``)."""
    modules_file = folder / MODULES
    if modules_file.exists():
        for module in json.loads(modules_file.read_text()):
            if module["type"].endswith("Transformer"):
                return folder / module.get("path", "")
    return folder


# ---------------------------------------------------------------------- saving
def save_model(model: nn.Module, folder: str | Path, keep_adapter: bool = False) -> Path:
    """Save a trained model: merged full weights, or (``keep_adapter``) its adapter only."""
    folder = Path(folder)
    if keep_adapter:
        if is_image_text(model):
            return save_dual_adapter(model, folder)
        return save_adapter(model, folder)
    if is_image_text(model) and has_adapters(model):
        # A copy, so that training (or a later best-model save) keeps its adapters.
        merged = copy.deepcopy(model)
        merge_injected_adapters(merged)
        return merged.save_pretrained(folder)
    return model.save_pretrained(folder)  # an Embedder merges its PeftModel itself


def has_adapters(model: nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in model.modules())


def merge_injected_adapters(model: nn.Module) -> None:
    """Fold every injected adapter layer into its base layer and put the base layer back in place."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer) and name:
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())


def adapter_method(peft_model: Any) -> str:
    config = peft_model.peft_config["default"]
    kind = str(getattr(config.peft_type, "value", config.peft_type)).lower()
    return "dora" if getattr(config, "use_dora", False) else kind


def save_adapter(embedder: Any, folder: Path) -> Path:
    """The sentence-transformers layout with a PEFT adapter instead of the encoder's full weights."""
    from peft import PeftModel

    if not isinstance(embedder.transformer, PeftModel):
        raise ValueError("training.save_adapter needs adapters on the model: set model.lora")
    embedder.save_pretrained(folder, merge_adapter=False)
    if adapter_method(embedder.transformer) == "dora":
        logger.warning("%s: a DoRA adapter loads in textdml; sentence-transformers / transformers misread its "
                       "magnitude vectors, so for them write the merged model with `textdml merge`", folder)
    local_base = embedder.transformer.peft_config["default"].base_model_name_or_path
    # peft records the folder the base was read from (a site-packages or cache path on this machine);
    # the adapter names the Hub id that folder is a copy of, so it loads anywhere (here, offline too:
    # the id resolves to that same cache or package folder).
    base = hub_copy_of(local_base) or local_base
    if base != local_base:
        config_file = folder / ADAPTER_CONFIG
        adapter_config = json.loads(config_file.read_text())
        config_file.write_text(json.dumps({**adapter_config, "base_model_name_or_path": base}, indent=2) + "\n")
    textdml_file = folder / TEXTDML_CONFIG
    textdml_config = json.loads(textdml_file.read_text()) if textdml_file.exists() else {}
    textdml_config["adapter"] = {"base_model": base, "method": adapter_method(embedder.transformer)}
    textdml_file.write_text(json.dumps(textdml_config, indent=2) + "\n")
    return folder


def hub_copy_of(path: str | None) -> str | None:
    """The Hub id whose unchanged copy ``path`` is (a Hugging Face cache snapshot, or a folder an
    installed package ships); None for any other folder, e.g. a fine-tuned one, whose own config may
    name the base it came from but whose weights are not the base's."""
    if not path:
        return None
    from textdml.hub.base_model import CACHE_FOLDER
    from textdml.models.packaged import PACKAGED_MODELS, packaged_model_folder

    resolved = Path(path).expanduser().resolve()
    for part in reversed(resolved.parts):
        match = CACHE_FOLDER.match(part)
        if match:
            return f"{match.group(1)}/{match.group(2)}"
    for hub_id in PACKAGED_MODELS:
        shipped = packaged_model_folder(hub_id)
        if shipped is not None and resolved in (shipped.resolve(), transformer_folder(shipped).resolve()):
            return hub_id
    return None


def save_dual_adapter(model: nn.Module, folder: Path) -> Path:
    """An image-text model's trained weights only, beside the description of its base."""
    from dataclasses import asdict

    from safetensors.torch import save_file

    import textdml

    base, config = getattr(model, "base_spec", None), getattr(model, "adapter_config", None)
    if base is None or config is None:
        raise ValueError("this image-text model has no adapters added from a model config (model.lora): save it "
                         "merged, without training.save_adapter")
    check_reproducible_base(base)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: p for name, p in model.named_parameters() if p.requires_grad}
    # Buffers (normalisation statistics) of a tower that trains change with it: kept too, they are small.
    persistent = model.state_dict(keep_vars=True)
    state.update({name: b for name, b in model.named_buffers() if name in persistent})
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, folder / ADAPTER_WEIGHTS)
    (folder / DUAL_ADAPTER_CONFIG).write_text(json.dumps({
        "textdml_dual_adapter": 1, "base": base, "adapter": asdict(config), "name": getattr(model, "name", None),
        "textdml_version": textdml.__version__}, indent=2, default=str) + "\n")
    return folder


def check_reproducible_base(base: dict[str, Any]) -> None:
    """An adapter is only worth keeping when its base can be rebuilt with the same weights."""
    dual = base.get("dual") or {}
    specs = [dual] if "kind" in dual else [dual.get("image") or {}, dual.get("text") or {}]
    for spec in specs:
        if spec.get("kind") in ("open_clip", "timm") and not spec.get("pretrained"):
            raise ValueError(f"the {spec['kind']} tower of this model starts from random weights (pretrained is not "
                             "set), so an adapter could never be put back on the same base: save the model merged "
                             "(drop training.save_adapter) or start from pretrained weights")


# ---------------------------------------------------------------------- pushing
def push_model(model: Any, repo_id: str, *, keep_adapter: bool = False, **kwargs: Any) -> PushResult:
    """Save ``model`` (an ``Embedder`` or ``DualEncoder``) to a temporary folder and push that folder.

    The one push of a model object: ``Embedder.push_to_hub``, ``DualEncoder.push_to_hub`` and the
    sentence-transformers surface all come here. ``kwargs`` are those of
    ``textdml.hub.push.push_to_hub``; ``keep_adapter`` pushes the adapter only.
    """
    check_repo_id(repo_id)
    if kwargs.get("dry_run") and kwargs.get("staging_dir") is None:
        raise ValueError("a dry run of a model object needs staging_dir (where to write the folder that would be sent)")
    with tempfile.TemporaryDirectory(prefix="textdml-save-") as folder:
        saved = save_model(model, Path(folder) / repo_id.split("/")[-1], keep_adapter=keep_adapter)
        return push_to_hub(saved, repo_id, **kwargs)
