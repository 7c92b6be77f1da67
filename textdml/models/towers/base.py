"""What every tower of a dual encoder offers: features, their size, its input preparation, freezing, save / load.

A tower is one side of an image-text model: an ``ImageTower`` turns pixels ``(B, 3, H, W)`` into
features ``(B, output_dim)``, a ``TextTower`` turns tokenised texts into features. The dual encoder
adds the projections, the normalisation and the logit scale on top.

Towers that come out of one whole model (open_clip's CLIP, Hugging Face ``CLIPModel`` /
``SiglipModel``) register only their own half and keep a hidden reference to that model
(``source``), so that the dual encoder can tell that both halves belong together and save the
whole model in its native format.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from textdml.models.saving import TOWER_CONFIG, TOWER_WEIGHTS  # noqa: F401  (towers import them from here)

if TYPE_CHECKING:
    from PIL import Image


class Tower(nn.Module):
    """Base class of image and text towers.

    Subclasses set ``kind`` (the name ``create_dual_encoder`` knows them by) and implement
    ``forward``, ``output_dim``, ``config``, ``save`` / ``load`` and, where layers are well defined,
    ``layer_groups``.
    """

    kind: ClassVar[str]
    modality: ClassVar[Literal["image", "text"]]

    def __init__(self) -> None:
        super().__init__()
        # A fully frozen tower is a fixed feature extractor (LiT): it stays in eval mode.
        self.locked = False
        self.requested_training = True  # the mode asked by train(), whatever locking makes of it
        self._source: tuple[nn.Module, ...] = ()

    # ------------------------------------------------------------------ the whole model it came from
    @property
    def source(self) -> nn.Module | None:
        """The whole model both towers were cut from (open_clip / Hugging Face), else None."""
        return self._source[0] if self._source else None

    def set_source(self, model: nn.Module | None) -> None:
        # A tuple keeps nn.Module from registering the whole model (and so the other tower) here.
        self._source = () if model is None else (model,)

    # ------------------------------------------------------------------ interface
    @property
    def output_dim(self) -> int:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """JSON-serialisable settings that ``load`` needs besides the weights (always holds ``kind``)."""
        raise NotImplementedError

    def save(self, folder: Path) -> None:
        """Write this tower alone into ``folder``."""
        raise NotImplementedError

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> Tower:
        """Rebuild a tower written by ``save``."""
        raise NotImplementedError

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The tower's layers (transformer blocks, CNN stages) in forward order, each a parameter list.

        The embeddings / stem are never in a group; the final norm and head go with the last group,
        so that unlocking the last n layers also unlocks what comes after them.
        """
        raise NotImplementedError(
            f"{type(self).__name__} has no well-defined layers: freeze the whole tower or train all of it"
        )

    # ------------------------------------------------------------------ freezing
    def freeze(self, unlock_last_n_layers: int = 0) -> None:
        """Stop training this tower, except its last ``unlock_last_n_layers`` layers (and its head).

        With nothing unlocked the tower is locked (LiT): it also stays in eval mode, so that its
        BatchNorm statistics and dropout do not change either.
        """
        if unlock_last_n_layers < 0:
            raise ValueError(f"unlock_last_n_layers must be >= 0, got {unlock_last_n_layers}")
        groups = self.layer_groups() if unlock_last_n_layers else []
        if unlock_last_n_layers > len(groups):
            raise ValueError(
                f"{type(self).__name__} has {len(groups)} layers; cannot unlock the last {unlock_last_n_layers}"
            )
        for param in self.parameters():
            param.requires_grad_(False)
        for group in groups[len(groups) - unlock_last_n_layers :]:
            for param in group:
                param.requires_grad_(True)
        self.locked = unlock_last_n_layers == 0
        self.train(self.requested_training)

    def train(self, mode: bool = True) -> Tower:
        self.requested_training = mode
        return super().train(mode and not self.locked)


class ImageTower(Tower):
    """Pixels ``(B, 3, H, W)`` -> features ``(B, output_dim)``; ``preprocess`` makes the pixels."""

    modality = "image"

    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """The eval transform of this tower: an RGB PIL image -> ``(3, H, W)``."""
        raise NotImplementedError

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """A PIL image (any mode) -> the ``(3, H, W)`` tensor this tower expects."""
        return self.image_transform()(to_rgb(image))


class TextTower(Tower):
    """Tokenised texts -> features ``(B, output_dim)``; ``tokenize`` makes the tokens."""

    modality = "text"

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image -> RGB. Transparent pixels are laid on white (not black, as ``convert`` does)."""
    from PIL import Image

    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


# ---------------------------------------------------------------------- layer groups
def block_groups(module: nn.Module, blocks: str, stem: tuple[str, ...], skip: tuple[str, ...] = ()) -> list[list[nn.Parameter]]:
    """One group per block of the list at path ``blocks``; parameters outside the blocks and the
    ``stem`` prefixes (final norm, projection, pooling head) join the last group; ``skip`` prefixes
    are never unlocked (e.g. a pooler that is not used)."""
    block_list = module.get_submodule(blocks)
    groups: list[list[nn.Parameter]] = [[] for _ in block_list]
    head: list[nn.Parameter] = []
    for name, param in module.named_parameters():
        if name.startswith(blocks + "."):
            groups[int(name[len(blocks) + 1 :].split(".")[0])].append(param)
        elif not name.startswith(stem + skip):
            head.append(param)
    if not groups:
        raise ValueError(f"{type(module).__name__}.{blocks} holds no blocks")
    groups[-1].extend(head)
    return groups


def longest_module_list(module: nn.Module) -> str:
    """The path of the longest ``nn.ModuleList`` in ``module``: the transformer blocks of HF encoders."""
    lists = [(len(child), name) for name, child in module.named_modules() if isinstance(child, nn.ModuleList)]
    if not lists:
        raise ValueError(f"{type(module).__name__} has no list of blocks (nn.ModuleList)")
    return max(lists, key=lambda entry: entry[0])[1]


# ---------------------------------------------------------------------- files
def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def save_weights(module: nn.Module, path: Path) -> None:
    """A module's state dict as safetensors; tied weights are cloned (safetensors refuses shared memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.detach().cpu().clone().contiguous() for key, value in module.state_dict().items()}, path)


def load_weights(module: nn.Module, path: Path) -> None:
    module.load_state_dict(load_file(path))
