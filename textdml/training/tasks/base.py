"""What every task shares: the ``Task`` protocol and its ``LossOutput``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass
class LossOutput:
    loss: torch.Tensor
    num_examples: int  # rows (pairs, triplets or labelled texts) in the batch


class Task(Protocol):
    """Model + loss (+ miner) -> one loss value per batch; the loop never knows which loss runs."""

    embedder: torch.nn.Module
    loss: Any
    miner: Any

    def training_step(self, batch: dict[str, Any]) -> LossOutput: ...

    def prepare_data(self, data: Any, seed: int) -> None: ...
