"""Towers cut from a Hugging Face ``CLIPModel`` (kind ``hf_clip``) or ``SiglipModel`` (``hf_siglip``).

Each tower registers its half under the Hugging Face attribute names (``vision_model`` +
``visual_projection``, ``text_model`` + ``text_projection``), so its weights carry the model's
own keys. A whole model saves with ``save_pretrained`` (loads with ``CLIPModel.from_pretrained``);
one tower alone saves its weights with the model's config and its image processor or tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from textdml.models.towers.base import TOWER_WEIGHTS, ImageTower, TextTower, block_groups, load_weights, save_weights

if TYPE_CHECKING:
    from PIL import Image
    from transformers import PreTrainedModel

HF_KINDS = ("hf_clip", "hf_siglip")
# What each half of the model is called, and which of its parameters come before the blocks.
VISION_STEM = ("vision_model.embeddings", "vision_model.pre_layrnorm")
TEXT_STEM = ("text_model.embeddings",)


def hf_model_class(kind: str) -> type[PreTrainedModel]:
    from transformers import CLIPModel, SiglipModel

    if kind not in HF_KINDS:
        raise ValueError(f"unknown Hugging Face tower kind {kind!r}: use one of {HF_KINDS}")
    return CLIPModel if kind == "hf_clip" else SiglipModel


class HfImageTower(ImageTower):
    """The vision half of a ``CLIPModel`` / ``SiglipModel``; pixels come from its image processor."""

    kind: ClassVar[str] = "hf_clip"

    def __init__(self, model: PreTrainedModel, image_processor: Any, kind: str = "hf_clip"):
        super().__init__()
        self.kind = kind  # type: ignore[misc]
        self.vision_model = model.vision_model
        # SigLIP's pooling head is inside vision_model; CLIP projects after it.
        self.visual_projection = getattr(model, "visual_projection", None)
        self.image_processor = image_processor
        self.model_config = model.config
        self.set_source(model)

    @property
    def output_dim(self) -> int:
        if self.visual_projection is not None:
            return self.visual_projection.out_features
        return self.model_config.vision_config.hidden_size

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled = self.vision_model(pixel_values=pixel_values).pooler_output  # (B, H)
        return pooled if self.visual_projection is None else self.visual_projection(pooled)

    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        return lambda image: self.image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    def layer_groups(self) -> list[list[nn.Parameter]]:
        return block_groups(self, "vision_model.encoder.layers", VISION_STEM)

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def save(self, folder: Path) -> None:
        save_half(self, folder, self.image_processor)

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> HfImageTower:
        from transformers import AutoImageProcessor

        model = model_from_config(config["kind"], folder)
        tower = cls(model, AutoImageProcessor.from_pretrained(folder), config["kind"])
        tower.set_source(None)
        load_weights(tower, folder / TOWER_WEIGHTS)
        return tower


class HfTextTower(TextTower):
    """The text half of a ``CLIPModel`` / ``SiglipModel`` with its tokenizer.

    SigLIP was trained on texts padded to the full length (its pooled token is the last one), so
    its texts are padded to ``max_position_embeddings``; CLIP pads to the longest text.
    """

    kind: ClassVar[str] = "hf_clip"

    def __init__(self, model: PreTrainedModel, tokenizer: Any, kind: str = "hf_clip"):
        super().__init__()
        self.kind = kind  # type: ignore[misc]
        self.text_model = model.text_model
        self.text_projection = getattr(model, "text_projection", None)
        self.tokenizer = tokenizer
        self.model_config = model.config
        self.max_length = model.config.text_config.max_position_embeddings
        self.set_source(model)

    @property
    def output_dim(self) -> int:
        if self.text_projection is not None:
            return self.text_projection.out_features
        return self.model_config.text_config.hidden_size

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        padding = "max_length" if self.kind == "hf_siglip" else True
        return dict(self.tokenizer(list(texts), padding=padding, truncation=True, max_length=self.max_length,
                                   return_tensors="pt"))

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in features.items() if k in ("input_ids", "attention_mask", "position_ids")}
        pooled = self.text_model(**inputs).pooler_output  # (B, H)
        return pooled if self.text_projection is None else self.text_projection(pooled)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        return block_groups(self, "text_model.encoder.layers", TEXT_STEM)

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def save(self, folder: Path) -> None:
        save_half(self, folder, self.tokenizer)

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> HfTextTower:
        from transformers import AutoTokenizer

        model = model_from_config(config["kind"], folder)
        tower = cls(model, AutoTokenizer.from_pretrained(folder), config["kind"])
        tower.set_source(None)
        load_weights(tower, folder / TOWER_WEIGHTS)
        return tower


# ---------------------------------------------------------------------- whole models
def create_hf_towers(kind: str, name_or_path: str) -> tuple[HfImageTower, HfTextTower]:
    """Both towers of a ``CLIPModel`` (``hf_clip``) or ``SiglipModel`` (``hf_siglip``) folder or Hub id."""
    from transformers import AutoImageProcessor, AutoTokenizer

    from textdml.models.embedder import resolve_model_folder

    folder = resolve_model_folder(str(name_or_path))
    model = hf_model_class(kind).from_pretrained(folder)
    return hf_towers(kind, model, AutoImageProcessor.from_pretrained(folder), AutoTokenizer.from_pretrained(folder))


def hf_towers(kind: str, model: PreTrainedModel, image_processor: Any, tokenizer: Any) -> tuple[HfImageTower, HfTextTower]:
    """Both towers of a model already in memory (e.g. a tiny one built from a config)."""
    expected = hf_model_class(kind)
    if not isinstance(model, expected):
        raise TypeError(f"kind {kind!r} needs a {expected.__name__}, got {type(model).__name__}")
    return HfImageTower(model, image_processor, kind), HfTextTower(model, tokenizer, kind)


def save_hf_model(image: HfImageTower, text: HfTextTower, folder: Path) -> None:
    """The whole model, its image processor and tokenizer, as ``save_pretrained`` writes them."""
    assert image.source is not None
    image.source.save_pretrained(folder)
    image.image_processor.save_pretrained(folder)
    text.tokenizer.save_pretrained(folder)


def load_hf_model(kind: str, folder: Path) -> tuple[HfImageTower, HfTextTower]:
    return create_hf_towers(kind, str(folder))


# ---------------------------------------------------------------------- one half
def save_half(tower: HfImageTower | HfTextTower, folder: Path, processor: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tower.model_config.save_pretrained(folder)
    processor.save_pretrained(folder)
    save_weights(tower, folder / TOWER_WEIGHTS)


def model_from_config(kind: str, folder: Path) -> PreTrainedModel:
    """A randomly initialised whole model from a saved config; the tower then loads its own half."""
    model_class = hf_model_class(kind)
    return model_class(model_class.config_class.from_pretrained(folder))
