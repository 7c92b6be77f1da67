"""Inference in batches, shared by every model: eval mode, no grad, training mode restored after."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from textdml.console import bars_silenced

logger = logging.getLogger(__name__)


def as_text_list(texts: str | Sequence[str]) -> tuple[list[str], bool]:
    """``(texts as a list, whether a single string was given)``; a non-string is a TypeError naming its row."""
    single = isinstance(texts, str)
    items = [texts] if single else list(texts)
    for row, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"encode: text {row} is {type(text).__name__}, expected str")
    return items, single


def run_batches(module: nn.Module, items: list[Any], embed: Callable[[list[Any]], torch.Tensor], batch_size: int,
                show_progress_bar: bool | None, description: str, dim: int) -> torch.Tensor:
    """``embed`` each batch of ``items`` in eval mode without grad: float32 ``(N, dim)``."""
    if show_progress_bar is None:
        show_progress_bar = logger.getEffectiveLevel() <= logging.INFO and len(items) > 10 * batch_size
    if bars_silenced():  # training.show_progress_bar=false, or an evaluation inside the training bar
        show_progress_bar = False
    was_training = module.training
    module.eval()
    chunks = []
    try:
        with torch.inference_mode():
            for start in tqdm(range(0, len(items), batch_size), desc=description, disable=not show_progress_bar):
                chunks.append(embed(items[start : start + batch_size]).float())
    finally:
        module.train(was_training)
    device = next(module.parameters()).device
    return torch.cat(chunks) if chunks else torch.empty(0, dim, device=device)


def run_length_sorted(module: nn.Module, texts: list[str], embed: Callable[[list[str]], torch.Tensor],
                      batch_size: int, show_progress_bar: bool | None, description: str, dim: int) -> torch.Tensor:
    """``run_batches`` over texts sorted longest first (little padding per batch), in input order again."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    embeddings = run_batches(module, [texts[i] for i in order], embed, batch_size, show_progress_bar, description, dim)
    return embeddings[torch.as_tensor(np.argsort(order), device=embeddings.device)]
