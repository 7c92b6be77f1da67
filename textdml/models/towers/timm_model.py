"""Any timm model as the image tower: ``timm.create_model(name, num_classes=0)`` gives pooled features."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from textdml.models.towers.base import TOWER_WEIGHTS, ImageTower, load_weights, save_weights

if TYPE_CHECKING:
    from PIL import Image


class TimmTower(ImageTower):
    """A timm backbone without its classifier, with timm's own eval transform for that model.

    Args:
        name: a timm model name (``timm.list_models()``).
        pretrained: load timm's pretrained weights (from the local cache or the Hub; offline, pass
            ``pretrained_cfg_overlay={"file": "<local weights>"}`` in ``model_kwargs``).
        model_kwargs: more ``timm.create_model`` arguments (``drop_path_rate``, ``img_size``, ...);
            JSON values, since they are saved with the tower.
    """

    kind = "timm"

    def __init__(self, name: str, pretrained: bool = False, model_kwargs: dict[str, Any] | None = None):
        super().__init__()
        import timm

        self.name = name
        self.model_kwargs = dict(model_kwargs or {})
        self.model = timm.create_model(name, pretrained=pretrained, num_classes=0, **self.model_kwargs)
        self._transform: Callable | None = None

    @property
    def output_dim(self) -> int:
        return int(self.model.num_features)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values)

    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        if self._transform is None:
            import timm.data

            data_config = timm.data.resolve_model_data_config(self.model)
            self._transform = timm.data.create_transform(**data_config, is_training=False)
        return self._transform

    def layer_groups(self) -> list[list[nn.Parameter]]:
        return timm_layer_groups(self.model)

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "model_kwargs": self.model_kwargs}

    def save(self, folder: Path) -> None:
        save_weights(self, folder / TOWER_WEIGHTS)

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> TimmTower:
        tower = cls(config["name"], pretrained=False, model_kwargs=config.get("model_kwargs"))
        load_weights(tower, folder / TOWER_WEIGHTS)
        return tower


def timm_layer_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """timm's coarse layer groups (stages or blocks, the final norm folded into the last) minus the stem."""
    from timm.models import group_parameters

    groups = group_parameters(model, model.group_matcher(coarse=True))
    return [[model.get_parameter(name) for name in names] for _, names in sorted(groups.items())[1:]]
