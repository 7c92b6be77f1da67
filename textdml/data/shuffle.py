from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class SeededShuffleSampler(Sampler[int]):
    """A random order that depends only on ``(seed, epoch)``, so a resumed run sees the same data order."""

    def __init__(self, length: int, seed: int = 0):
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())

    def __len__(self) -> int:
        return self.length
