"""The image–text task: two towers -> embeddings -> the same loss contract as text.

Image–text pairs: image embeddings are the anchors and caption embeddings the references (CLIP
and SigLIP losses, or any pair loss); labelled images: image embeddings with class labels (any
loss and miner of the catalogue).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from textdml.distributed import compute_local_loss
from textdml.losses.base import BaseLoss
from textdml.losses.needs import loss_needs
from textdml.miners.base import BaseMiner
from textdml.training.grad_cache import cached_backward, split_features
from textdml.training.tasks.base import LossOutput
from textdml.training.tasks.prepare import check_scores


class ImageTextTask(nn.Module):
    """Owns the dual encoder, the loss and an optional miner; ``training_step(batch) -> LossOutput``.

    Batches come from ``ImageTextCollator``: ``{"image": (B, 3, H, W), "text": features,
    "labels", "ref_labels"}`` for pairs, ``{"image": ..., "labels": class ids}`` for labelled images.
    """

    def __init__(self, model: nn.Module, loss: BaseLoss, miner: BaseMiner | None = None):
        super().__init__()
        self.embedder = model  # the name the loop saves, evaluates and gathers under
        self.loss = loss
        self.miner = miner
        self.needs = loss_needs(loss)

    def prepare_data(self, data: Any, seed: int) -> None:
        """Fit the training data to the loss before the loader is built (score ranges)."""
        check_scores(self.loss, self.needs, data)

    def forward(self, batch: dict[str, Any] | None = None, *, pixels: torch.Tensor | None = None,
                features: dict[str, torch.Tensor] | None = None):
        """``task(batch)`` -> LossOutput; ``task(pixels=...)`` / ``task(features=...)`` -> one tower's
        embeddings (GradCache's mini-batches go through here so that DDP sees every forward)."""
        if pixels is not None:
            return self.embedder.embed_images(pixels)
        if features is not None:
            return self.embedder.embed_texts(features)
        return self.training_step(batch)

    def training_step(self, batch: dict[str, Any]) -> LossOutput:
        images = self.embedder.embed_images(batch["image"])  # (B, D)
        texts = self.embedder.embed_texts(batch["text"]) if "text" in batch else None
        return LossOutput(self.loss_from_embeddings(batch, images, texts), len(images))

    def cached_step(self, batch: dict[str, Any], mini_batch_size: int, embed: Callable | None = None,
                    backward: Callable | None = None, no_sync: Callable | None = None) -> LossOutput:
        """GradCache over both towers: full-batch loss, backpropagated mini-batch by mini-batch."""
        call = embed or self
        pixels = list(batch["image"].split(mini_batch_size))
        chunks: list[list[Any]] = [[("pixels", p) for p in pixels]]
        if "text" in batch:
            chunks.append([("features", f) for f in split_features(batch["text"], mini_batch_size)])
        loss = cached_backward(
            lambda chunk: call(**{chunk[0]: chunk[1]}), chunks,
            lambda embeddings: self.loss_from_embeddings(batch, *embeddings),
            backward=backward, no_sync=no_sync,
        )
        return LossOutput(loss, len(batch["image"]))

    def loss_from_embeddings(self, batch: dict[str, Any], images: torch.Tensor,
                             texts: torch.Tensor | None = None) -> torch.Tensor:
        labels = batch["labels"].to(images.device)
        declared = {"symmetric": self.needs.symmetric, "accepts_indices": self.needs.accepts_indices}
        if texts is None:  # labelled images
            if not self.needs.gathers:
                indices = self.miner(images, labels) if self.miner is not None else None
                return self.loss(images, labels, indices=indices)
            return compute_local_loss(self.loss, images, labels, miner=self.miner, **declared)
        ref_labels = batch["ref_labels"].to(images.device)
        return compute_local_loss(self.loss, images, labels, texts, ref_labels, miner=self.miner, **declared)
