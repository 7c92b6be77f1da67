"""Adapters (LoRA, DoRA, IA3 through ``peft``): add them, load and merge them (saving is ``textdml.models.saving``).

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

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from textdml.config import AdapterConfig
from textdml.models.embedder import Embedder, load_adapter_transformer  # noqa: F401  (its old import path)
from textdml.models.saving import (  # noqa: F401  (saving moved to textdml.models.saving; the old names stay here)
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    DUAL_ADAPTER_CONFIG,
    MODEL_CARD,
    MODULES,
    TEXTDML_CONFIG,
    adapter_base,
    adapter_method,
    check_reproducible_base,
    has_adapters,
    hub_copy_of,
    is_adapter_folder,
    is_dual_adapter_folder,
    is_image_text,
    merge_injected_adapters,
    save_adapter,
    save_dual_adapter,
    save_model,
    transformer_folder,
)

if TYPE_CHECKING:
    from peft import PeftConfig

logger = logging.getLogger(__name__)


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
    if is_image_text(model):
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


# ---------------------------------------------------------------------- loading and merging
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
    from textdml.outputs import start_output_folder

    if not is_adapter_folder(adapter_dir):
        raise ValueError(f"{adapter_dir} has no {ADAPTER_CONFIG}: it is not an adapter save (train with "
                         "model.lora and training.save_adapter=true)")
    if not (adapter_dir / MODULES).exists():
        raise ValueError(f"{adapter_dir} is a PEFT adapter without a sentence-transformers {MODULES}: textdml "
                         "merges the adapter saves it writes (training.save_adapter=true)")
    embedder = Embedder.from_pretrained(adapter_dir)
    embedder.save_pretrained(start_output_folder(out, **replace))  # merges the PeftModel
    textdml_file = out / TEXTDML_CONFIG
    textdml_config = json.loads(textdml_file.read_text())
    textdml_config["merged_from_adapter"] = {"base_model": adapter_base(adapter_dir)}
    textdml_file.write_text(json.dumps(textdml_config, indent=2) + "\n")
    readme = adapter_dir / MODEL_CARD
    if readme.exists():
        from textdml.hub.model_card import merged_card

        (out / MODEL_CARD).write_text(merged_card(readme.read_text()))
