"""Adapters (LoRA, DoRA, IA3 through ``peft``): add them, save them as adapters, load and merge them.

A text ``Embedder`` gets its encoder wrapped in a ``peft.PeftModel``; a ``DualEncoder`` gets
adapter layers injected into the chosen tower(s) in place, so that a tower cut from a whole
open_clip model keeps sharing its modules with that model.

An adapter save (``training.save_adapter: true``) is a sentence-transformers folder whose
transformer is a PEFT adapter: ``adapter_config.json`` (with ``base_model_name_or_path``) and
``adapter_model.safetensors`` beside the tokenizer, pooling and ``modules.json``. It loads in
textdml (``Embedder.from_pretrained``), in sentence-transformers (``SentenceTransformer(folder)``
or ``SentenceTransformer(base).load_adapter(folder)``), and ``merge_adapter`` (``textdml merge``)
writes the merged full model.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from textdml.config import AdapterConfig

if TYPE_CHECKING:
    from peft import PeftConfig

    from textdml.models.embedder import Embedder

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# An image-text model's adapter save: the base to rebuild, the adapter settings, and (in
# ADAPTER_WEIGHTS) every weight that trained: adapters, projections, logit scale, unfrozen towers.
DUAL_ADAPTER_CONFIG = "textdml_dual_adapter.json"


# ---------------------------------------------------------------------- building
def create_peft_config(config: AdapterConfig, target_modules: list[str] | str | None = None) -> PeftConfig:
    """The ``peft`` config for ``config``; ``target_modules`` overrides the configured ones."""
    from peft import IA3Config, LoraConfig

    targets = target_modules if target_modules is not None else config.target_modules
    if config.method == "ia3":
        return IA3Config(target_modules=targets, feedforward_modules=config.feedforward_modules)
    return LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=targets or "all-linear", use_dora=config.method == "dora", bias="none")


def add_adapters(model: nn.Module, config: AdapterConfig) -> None:
    """Add adapters to a text ``Embedder`` (its encoder) or to a ``DualEncoder``'s ``config.tower``."""
    if hasattr(model, "embed_images"):
        add_dual_encoder_adapters(model, config)
        return
    if config.tower != "text":
        raise ValueError(f"model.lora.tower={config.tower!r} applies to image-text models; a text model has one "
                         "encoder: leave model.lora.tower out")
    from peft import get_peft_model

    try:
        model.transformer = get_peft_model(model.transformer, create_peft_config(config))
    except ValueError as err:  # peft: no default targets for this architecture, or a name that matches nothing
        raise ValueError(f"model.lora ({config.method}): {err}. Set model.lora.target_modules to module names of "
                         f"this encoder, e.g. {sorted(linear_module_names(model.transformer))[:6]}") from err


def add_dual_encoder_adapters(model: nn.Module, config: AdapterConfig) -> None:
    from peft import inject_adapter_in_model

    model.adapter_config = config

    sides = ("image", "text") if config.tower == "both" else (config.tower,)
    for side in sides:
        tower = getattr(model, f"{side}_tower")
        targets = config.target_modules
        if targets is None or targets == "all-linear":
            # peft's all-linear also wraps the out_proj of nn.MultiheadAttention (open_clip's ViT),
            # whose forward reads the weight directly, so that adapter would never train: skip those.
            targets = sorted(linear_module_names(tower))
            if config.method == "ia3" and config.feedforward_modules is None:
                raise ValueError(f"model.lora.method=ia3 on the {side} tower needs model.lora.target_modules and "
                                 f"model.lora.feedforward_modules, e.g. target_modules={targets[:4]}")
        try:
            inject_adapter_in_model(create_peft_config(config, targets), tower)
        except ValueError as err:
            raise ValueError(f"model.lora on the {side} tower: {err}. Linear layers of this tower: "
                             f"{sorted(linear_module_names(tower))[:8]}") from err


def linear_module_names(module: nn.Module) -> set[str]:
    """Last name components of the linear layers (outside nn.MultiheadAttention) of ``module``."""
    inside_attention = {f"{name}.{child}" for name, m in module.named_modules()
                        if isinstance(m, nn.MultiheadAttention) for child, _ in m.named_children()}
    return {name.rsplit(".", 1)[-1] for name, m in module.named_modules()
            if isinstance(m, nn.Linear) and name not in inside_attention and name}


def has_adapters(model: nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in model.modules())


# ---------------------------------------------------------------------- saving
def save_model(model: nn.Module, folder: str | Path, keep_adapter: bool = False) -> Path:
    """Save a trained model: merged full weights, or (``keep_adapter``) a text model's PEFT adapter."""
    folder = Path(folder)
    if keep_adapter:
        if hasattr(model, "embed_images"):
            return save_dual_adapter(model, folder)
        return save_adapter(model, folder)  # type: ignore[arg-type]
    if hasattr(model, "embed_images") and has_adapters(model):
        # A copy, so that training (or a later best-model save) keeps its adapters.
        merged = copy.deepcopy(model)
        merge_injected_adapters(merged)
        return merged.save_pretrained(folder)
    return model.save_pretrained(folder)  # an Embedder merges its PeftModel itself


def merge_injected_adapters(model: nn.Module) -> None:
    """Fold every injected adapter layer into its base layer and put the base layer back in place."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer) and name:
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())


def save_adapter(embedder: Embedder, folder: Path) -> Path:
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
    textdml_file = folder / "textdml_config.json"
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


def is_dual_adapter_folder(folder: str | Path) -> bool:
    return (Path(folder) / DUAL_ADAPTER_CONFIG).exists()


def load_dual_adapter(folder: str | Path) -> nn.Module:
    """Rebuild the base image-text model of an adapter save, add the adapters, load the trained weights."""
    from safetensors.torch import load_file

    from textdml.models.dual_encoder import DualEncoder, create_dual_encoder

    folder = Path(folder)
    saved = json.loads((folder / DUAL_ADAPTER_CONFIG).read_text())
    base, config = saved["base"], AdapterConfig(**saved["adapter"])
    try:
        model = create_dual_encoder(base["dual"]) if "dual" in base else DualEncoder.from_pretrained(base["name_or_path"])
    except (FileNotFoundError, OSError) as err:
        raise FileNotFoundError(f"the adapter in {folder} was trained on a base model that cannot be built here "
                                f"({err}); base: {json.dumps(base)}") from err
    add_adapters(model, config)
    model.base_spec = base
    result = model.load_state_dict(load_file(str(folder / ADAPTER_WEIGHTS)), strict=False)
    if result.unexpected_keys:
        raise ValueError(f"{folder / ADAPTER_WEIGHTS} holds weights this model does not have: "
                         f"{result.unexpected_keys[:5]}; was it saved from another base or adapter config?")
    return model


def adapter_method(peft_model: Any) -> str:
    config = peft_model.peft_config["default"]
    kind = str(getattr(config.peft_type, "value", config.peft_type)).lower()
    return "dora" if getattr(config, "use_dora", False) else kind


# ---------------------------------------------------------------------- loading and merging
def is_adapter_folder(folder: str | Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).exists()


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


def load_adapter_transformer(folder: str | Path, trust_remote_code: bool = False,
                             dtype: torch.dtype | None = None, is_trainable: bool = True) -> nn.Module:
    """The base encoder named by the adapter folder, wrapped with the saved adapter (a ``PeftModel``)."""
    from peft import PeftModel
    from transformers import AutoModel

    from textdml.models.embedder import resolve_model_folder

    base = adapter_base(folder)
    try:
        base_folder = resolve_model_folder(base)
    except (FileNotFoundError, NotADirectoryError) as err:
        raise FileNotFoundError(
            f"the adapter in {folder} was trained on base model {base!r}, which cannot be found: {err}. Put the base "
            f"model there, or edit base_model_name_or_path in {Path(folder) / ADAPTER_CONFIG}"
        ) from err
    base_folder = transformer_folder(base_folder)
    if trust_remote_code:
        from textdml.models.remote_code import warn_remote_code

        warn_remote_code(str(base_folder))
    transformer = AutoModel.from_pretrained(base_folder, trust_remote_code=trust_remote_code,
                                            **({"dtype": dtype} if dtype else {}))
    return PeftModel.from_pretrained(transformer, str(folder), is_trainable=is_trainable)


def transformer_folder(folder: Path) -> Path:
    """Where a sentence-transformers folder keeps its encoder (its root, or ``0_Transformer/``)."""
    modules_file = folder / "modules.json"
    if modules_file.exists():
        for module in json.loads(modules_file.read_text()):
            if module["type"].endswith("Transformer"):
                return folder / module.get("path", "")
    return folder


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, force: bool = False) -> Path:
    """Load an adapter save with its base, fold the adapter into the weights, write the full model.

    ``out_dir`` must be new, empty, or an earlier merge's output that nobody changed since (see
    ``textdml.outputs``); ``force`` replaces whatever is there.
    """
    from textdml.outputs import check_apart, check_replaceable, seal_output_folder, start_output_folder

    adapter_dir, out = Path(adapter_dir), Path(out_dir)
    if not adapter_dir.is_dir():
        raise FileNotFoundError(f"adapter folder {str(adapter_dir)!r} does not exist")
    check_apart(out, adapter_dir, "merged model folder", "adapter folder")
    replace = {"command": "textdml merge", "force": force, "instead": "name a new folder for the merged model"}
    check_replaceable(out, **replace)  # before the slow load; the folder is replaced only after it
    if is_dual_adapter_folder(adapter_dir):
        save_model(load_dual_adapter(adapter_dir), start_output_folder(out, **replace))
    else:
        merge_text_adapter(adapter_dir, out, replace)
    seal_output_folder(out)
    logger.info("merged the adapter of %s into its base; wrote %s", adapter_dir, out)
    return out


def merge_text_adapter(adapter_dir: Path, out: Path, replace: dict[str, Any]) -> None:
    """``merge_adapter`` of an ``Embedder``'s adapter save: the merged model, its config and card."""
    from textdml.models.embedder import Embedder
    from textdml.outputs import start_output_folder

    if not is_adapter_folder(adapter_dir):
        raise ValueError(f"{adapter_dir} has no {ADAPTER_CONFIG}: it is not an adapter save (train with "
                         "model.lora and training.save_adapter=true)")
    if not (adapter_dir / "modules.json").exists():
        raise ValueError(f"{adapter_dir} is a PEFT adapter without a sentence-transformers modules.json: textdml "
                         "merges the adapter saves it writes (training.save_adapter=true)")
    embedder = Embedder.from_pretrained(adapter_dir)
    embedder.save_pretrained(start_output_folder(out, **replace))  # merges the PeftModel
    textdml_file = out / "textdml_config.json"
    textdml_config = json.loads(textdml_file.read_text())
    textdml_config["merged_from_adapter"] = {"base_model": adapter_base(adapter_dir)}
    textdml_file.write_text(json.dumps(textdml_config, indent=2) + "\n")
    readme = adapter_dir / "README.md"
    if readme.exists():
        from textdml.hub.model_card import merged_card

        (out / "README.md").write_text(merged_card(readme.read_text()))
