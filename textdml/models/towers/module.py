"""Any torch module that maps pixels to features, with declared resize / crop / normalisation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from textdml.models.towers.base import TOWER_WEIGHTS, ImageTower, load_weights, save_weights
from textdml.registry import import_component_class

if TYPE_CHECKING:
    from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModuleTower(ImageTower):
    """A user module ``(B, 3, H, W) -> (B, output_dim)`` as the image tower.

    The eval transform is declared: resize the shorter side to ``resize_size``, centre-crop
    ``image_size``, scale to [0, 1], normalise with ``mean`` / ``std``.

    Args:
        module: the backbone.
        output_dim: the size of its output features.
        image_size: the square crop the module expects.
        mean, std: per-channel normalisation of [0, 1] pixels.
        resize_size: the shorter side before cropping (default: ``image_size``).
        interpolation: ``"bicubic"``, ``"bilinear"`` or ``"nearest"``.
        target: ``"pkg.module.Class"`` that rebuilds the module on load (default: the module's class).
        module_kwargs: the constructor arguments for ``target`` (JSON values).
    """

    kind = "module"

    def __init__(
        self,
        module: nn.Module,
        output_dim: int,
        image_size: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        resize_size: int | None = None,
        interpolation: str = "bicubic",
        target: str | None = None,
        module_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.module = module
        self._output_dim = int(output_dim)
        self.preprocessing = {"image_size": image_size, "mean": list(mean), "std": list(std),
                              "resize_size": resize_size or image_size, "interpolation": interpolation}
        self.target = target or f"{type(module).__module__}.{type(module).__qualname__}"
        self.module_kwargs = dict(module_kwargs or {})
        self._transform: Callable | None = None

    @classmethod
    def from_target(cls, target: str, output_dim: int, module_kwargs: dict[str, Any] | None = None,
                    **preprocessing: Any) -> ModuleTower:
        """Build ``target(**module_kwargs)`` and wrap it."""
        module = import_component_class(target, "image tower")(**(module_kwargs or {}))
        return cls(module, output_dim, target=target, module_kwargs=module_kwargs, **preprocessing)

    @property
    def output_dim(self) -> int:
        return self._output_dim

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.module(pixel_values)

    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        if self._transform is None:
            self._transform = declared_transform(**self.preprocessing)
        return self._transform

    def layer_groups(self) -> list[list[nn.Parameter]]:
        # A module that knows its layers can say so; nothing else can be assumed about it.
        if hasattr(self.module, "layer_groups"):
            return self.module.layer_groups()
        return super().layer_groups()

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "module_kwargs": self.module_kwargs,
                "output_dim": self.output_dim, **self.preprocessing}

    def save(self, folder: Path) -> None:
        save_weights(self, folder / TOWER_WEIGHTS)

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> ModuleTower:
        settings = {k: v for k, v in config.items() if k != "kind"}
        try:
            tower = cls.from_target(**settings)
        except (ImportError, TypeError, ValueError) as err:
            raise ValueError(
                f"cannot rebuild the image module {config['target']!r} with {config['module_kwargs']}: {err}. "
                "Give the module a constructor that takes these JSON arguments (module_kwargs), or load the "
                f"weights yourself from {folder / TOWER_WEIGHTS}"
            ) from err
        load_weights(tower, folder / TOWER_WEIGHTS)
        return tower


def declared_transform(image_size: int, mean: Sequence[float], std: Sequence[float], resize_size: int,
                       interpolation: str = "bicubic") -> Callable:
    """Resize the shorter side, centre-crop, to tensor, normalise (torchvision)."""
    from torchvision import transforms

    modes = {"bicubic": transforms.InterpolationMode.BICUBIC, "bilinear": transforms.InterpolationMode.BILINEAR,
             "nearest": transforms.InterpolationMode.NEAREST}
    if interpolation not in modes:
        raise ValueError(f"interpolation must be one of {sorted(modes)}, got {interpolation!r}")
    return transforms.Compose([
        transforms.Resize(resize_size, interpolation=modes[interpolation]),
        transforms.CenterCrop(image_size),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])
