"""Towers cut from an open_clip model (``CLIP`` / ``CustomTextCLIP``): the image side is
``model.visual``, the text side everything else but the logit scale and bias.

A whole model saves in open_clip's own folder layout (``open_clip_config.json`` +
``open_clip_model.safetensors``), which ``open_clip.create_model_and_transforms("local-dir:<folder>")``
loads, as does ``create_model_and_transforms(arch, pretrained="<folder>/open_clip_model.safetensors")``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from textdml.models.saving import OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS
from textdml.models.towers.base import (
    TOWER_WEIGHTS,
    ImageTower,
    TextTower,
    block_groups,
    load_weights,
    read_json,
    save_weights,
    write_json,
)

if TYPE_CHECKING:
    from PIL import Image

# The text half of open_clip's CLIP class lives on the model itself, not in a submodule.
CLIP_TEXT_PARTS = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
CLIP_TEXT_SETTINGS = ("context_length", "vocab_size", "text_pool_type", "text_eos_id")


class OpenClipImageTower(ImageTower):
    """``model.visual`` of an open_clip model, with open_clip's eval transform."""

    kind = "open_clip"

    def __init__(self, model: nn.Module, model_cfg: dict[str, Any], preprocess_cfg: dict[str, Any]):
        super().__init__()
        self.visual = model.visual
        self.model_cfg = model_cfg
        self.preprocess_cfg = preprocess_cfg
        self._transform: Callable | None = None
        self.set_source(model)

    @property
    def output_dim(self) -> int:
        return int(self.visual.output_dim)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.visual(pixel_values)

    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        if self._transform is None:
            self._transform = open_clip_transform(self.preprocess_cfg)
        return self._transform

    def layer_groups(self) -> list[list[nn.Parameter]]:
        from open_clip.timm_model import TimmModel
        from open_clip.transformer import VisionTransformer

        if isinstance(self.visual, VisionTransformer):
            stem = ("visual.conv1", "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre",
                    "visual.patchnorm_pre_ln")
            return block_groups(self, "visual.transformer.resblocks", stem)
        if isinstance(self.visual, TimmModel):
            from textdml.models.towers.timm_model import timm_layer_groups

            groups = timm_layer_groups(self.visual.trunk)
            groups[-1].extend(self.visual.head.parameters())
            return groups
        return super().layer_groups()

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "model_cfg": self.model_cfg, "preprocess_cfg": self.preprocess_cfg}

    def save(self, folder: Path) -> None:
        write_json(folder / OPEN_CLIP_CONFIG, {"model_cfg": self.model_cfg, "preprocess_cfg": self.preprocess_cfg})
        save_weights(self, folder / TOWER_WEIGHTS)

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> OpenClipImageTower:
        tower = cls(build_open_clip_model(config["model_cfg"]), config["model_cfg"], config["preprocess_cfg"])
        tower.set_source(None)
        load_weights(tower, folder / TOWER_WEIGHTS)
        return tower


class OpenClipTextTower(TextTower):
    """The text half of an open_clip model, with open_clip's tokenizer (``input_ids`` only)."""

    kind = "open_clip"

    def __init__(self, model: nn.Module, model_cfg: dict[str, Any], tokenizer: Callable):
        super().__init__()
        self.model_cfg = model_cfg
        self.tokenizer = tokenizer
        self.custom_text = hasattr(model, "text")
        if self.custom_text:  # CustomTextCLIP: the text tower is one submodule
            self.text = model.text
        else:  # CLIP: register its text parts here, so that CLIP.encode_text runs on this tower
            for name in CLIP_TEXT_PARTS:
                setattr(self, name, getattr(model, name))
            for name in CLIP_TEXT_SETTINGS:
                setattr(self, name, getattr(model, name, None))
            self.register_buffer("attn_mask", model.attn_mask, persistent=False)
        self.set_source(model)

    @property
    def output_dim(self) -> int:
        return int(self.model_cfg["embed_dim"])

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return {"input_ids": self.tokenizer(list(texts))}

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        input_ids = features["input_ids"]
        if self.custom_text:
            return self.text(input_ids)
        import open_clip

        # CLIP.encode_text reads only the text parts, which this tower holds under the same names.
        return open_clip.CLIP.encode_text(self, input_ids)  # type: ignore[arg-type]

    def layer_groups(self) -> list[list[nn.Parameter]]:
        if not self.custom_text:
            return block_groups(self, "transformer.resblocks", ("token_embedding", "positional_embedding"))
        from open_clip.transformer import TextTransformer

        if isinstance(self.text, TextTransformer):
            stem = ("text.token_embedding", "text.positional_embedding", "text.cls_emb")
            return block_groups(self, "text.transformer.resblocks", stem)
        return super().layer_groups()

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "model_cfg": self.model_cfg}

    def save(self, folder: Path) -> None:
        write_json(folder / OPEN_CLIP_CONFIG, {"model_cfg": self.model_cfg})
        save_tokenizer(self.tokenizer, folder)
        save_weights(self, folder / TOWER_WEIGHTS)

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> OpenClipTextTower:
        import open_clip

        model = build_open_clip_model(config["model_cfg"])
        tower = cls(model, config["model_cfg"], open_clip.get_tokenizer(f"local-dir:{folder}"))
        tower.set_source(None)
        load_weights(tower, folder / TOWER_WEIGHTS)
        return tower


# ---------------------------------------------------------------------- whole models
def create_open_clip_towers(
    arch: str, pretrained: str | None = None, model_kwargs: dict[str, Any] | None = None
) -> tuple[OpenClipImageTower, OpenClipTextTower]:
    """Both towers of ``open_clip.create_model(arch, pretrained=...)``.

    Args:
        arch: an open_clip architecture name (``"ViT-B-32"``, one added with ``open_clip.add_model_config``)
            or ``"local-dir:<folder>"``.
        pretrained: a local checkpoint file (or an open_clip tag when the weights are cached); None
            for random weights.
        model_kwargs: overrides of the architecture config (e.g. ``{"init_logit_bias": -10}``).
    """
    import open_clip

    model_kwargs = dict(model_kwargs or {})
    model = open_clip.create_model(arch, pretrained=pretrained, **model_kwargs)
    model_cfg = open_clip.get_model_config(arch)
    if model_cfg is None:
        raise ValueError(f"open_clip has no architecture {arch!r}; add it with open_clip.add_model_config")
    model_cfg.update(model_kwargs)
    return open_clip_towers(model, model_cfg, open_clip.get_tokenizer(arch))


def open_clip_towers(
    model: nn.Module, model_cfg: dict[str, Any], tokenizer: Callable
) -> tuple[OpenClipImageTower, OpenClipTextTower]:
    """Both towers of an open_clip model built elsewhere (``model_cfg`` is its architecture config)."""
    import open_clip

    if "multimodal_cfg" in model_cfg:
        raise ValueError("open_clip CoCa models are not supported as dual encoders (they also hold a decoder)")
    preprocess_cfg = json_ready(open_clip.get_model_preprocess_cfg(model))
    model_cfg = json_ready(model_cfg)
    return OpenClipImageTower(model, model_cfg, preprocess_cfg), OpenClipTextTower(model, model_cfg, tokenizer)


def save_open_clip_model(image: OpenClipImageTower, text: OpenClipTextTower, folder: Path) -> None:
    """The whole model in open_clip's folder layout (loads with ``create_model("local-dir:<folder>")``)."""
    write_json(folder / OPEN_CLIP_CONFIG, {"model_cfg": image.model_cfg, "preprocess_cfg": image.preprocess_cfg})
    save_tokenizer(text.tokenizer, folder)
    assert image.source is not None
    save_weights(image.source, folder / OPEN_CLIP_WEIGHTS)


def load_open_clip_model(folder: Path) -> tuple[OpenClipImageTower, OpenClipTextTower]:
    import open_clip

    arch = f"local-dir:{folder}"
    model_cfg = read_json(folder / OPEN_CLIP_CONFIG)["model_cfg"]
    return open_clip_towers(open_clip.create_model(arch), model_cfg, open_clip.get_tokenizer(arch))


# ---------------------------------------------------------------------- helpers
def build_open_clip_model(model_cfg: dict[str, Any]) -> nn.Module:
    """A randomly initialised open_clip model from an architecture config (the factory's class choice)."""
    import open_clip

    cfg = copy.deepcopy(model_cfg)
    custom_text = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
    model_class = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    return model_class(**cfg)


def open_clip_transform(preprocess_cfg: dict[str, Any]) -> Callable:
    from open_clip.transform import PreprocessCfg, image_transform_v2

    cfg = {key: tuple(value) if isinstance(value, list) else value for key, value in preprocess_cfg.items()}
    return image_transform_v2(PreprocessCfg(**cfg), is_train=False)


def save_tokenizer(tokenizer: Any, folder: Path) -> None:
    # open_clip's HF tokenizers carry files; its default BPE tokenizer ships in the wheel.
    if hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(str(folder))


def json_ready(value: Any) -> Any:
    """Tuples -> lists, recursively, so that a config round-trips through JSON unchanged."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    return value
