"""A textdml ``Embedder`` (any sentence-transformers or Hugging Face text encoder) as the text tower."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from textdml.models.embedder import Embedder
from textdml.models.towers.base import TextTower, block_groups, longest_module_list


class EmbedderTower(TextTower):
    """Texts -> the embedder's sentence embeddings (pooled, projected by its Dense, maybe normalised).

    Saves in the sentence-transformers layout, so the text tower alone loads in
    ``SentenceTransformer(folder)``.
    """

    kind = "embedder"

    def __init__(self, embedder: Embedder):
        super().__init__()
        self.embedder = embedder

    @classmethod
    def from_pretrained(cls, name_or_path: str, **embedder_kwargs: Any) -> EmbedderTower:
        """``Embedder.from_pretrained(name_or_path, **embedder_kwargs)`` (pooling, normalize, max_seq_length, ...)."""
        return cls(Embedder.from_pretrained(name_or_path, **embedder_kwargs))

    @property
    def output_dim(self) -> int:
        return self.embedder.embedding_dim

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.embedder.tokenize(list(texts))

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.embedder(features)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """One group per encoder layer; the embeddings before them stay frozen, and the BERT pooler
        (never part of a sentence embedding) is left out."""
        blocks = "embedder.transformer." + longest_module_list(self.embedder.transformer)
        names = [name for name, _ in self.named_parameters()]
        first_block = next(i for i, name in enumerate(names) if name.startswith(blocks + "."))
        stem = tuple(names[:first_block])
        return block_groups(self, blocks, stem, skip=("embedder.transformer.pooler.",))

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def save(self, folder: Path) -> None:
        self.embedder.save_pretrained(folder)

    @classmethod
    def load(cls, folder: Path, config: dict[str, Any]) -> EmbedderTower:
        return cls(Embedder.from_pretrained(folder))
