"""Inference in batches, shared by every model: eval mode, no grad, training mode restored after."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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


def run_batches(module: nn.Module, items: list[Any], embed: Callable[[Any], torch.Tensor], batch_size: int,
                show_progress_bar: bool | None, description: str, dim: int,
                prepare: Callable[[list[Any]], Any] | None = None) -> torch.Tensor:
    """``embed`` each batch of ``items`` in eval mode without grad: float32 ``(N, dim)``.

    ``prepare`` (tokenisation, image decoding) turns a batch into ``embed``'s input; the next
    batch is prepared in a helper thread while the current one runs through the model. Tokenizers
    (Rust), PIL and torch release the GIL, so on two cores the two overlap instead of taking turns;
    the order of the outputs and the values are those of ``embed(prepare(batch))`` one by one.
    """
    if show_progress_bar is None:
        show_progress_bar = logger.getEffectiveLevel() <= logging.INFO and len(items) > 10 * batch_size
    if bars_silenced():  # training.show_progress_bar=false, or an evaluation inside the training bar
        show_progress_bar = False
    was_training = module.training
    module.eval()
    chunks = []
    starts = range(0, len(items), batch_size)
    try:
        with torch.inference_mode(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="textdml-prepare") as helper:
            ahead = helper.submit(prepare, items[:batch_size]) if prepare is not None and len(items) else None
            for start in tqdm(starts, desc=description, disable=not show_progress_bar):
                batch = items[start : start + batch_size]
                if ahead is None:
                    inputs = batch
                else:  # one batch prepared ahead: memory stays bounded
                    inputs = ahead.result()
                    following = items[start + batch_size : start + 2 * batch_size]
                    ahead = helper.submit(prepare, following) if following else None
                chunks.append(embed(inputs).float())
    finally:
        module.train(was_training)
    device = next(module.parameters()).device
    return torch.cat(chunks) if chunks else torch.empty(0, dim, device=device)


def run_length_sorted(module: nn.Module, texts: list[str], embed: Callable[[Any], torch.Tensor],
                      batch_size: int, show_progress_bar: bool | None, description: str, dim: int,
                      prepare: Callable[[list[str]], Any] | None = None) -> torch.Tensor:
    """``run_batches`` over texts sorted longest first (little padding per batch), in input order again."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    embeddings = run_batches(module, [texts[i] for i in order], embed, batch_size, show_progress_bar, description, dim,
                             prepare)
    return embeddings[torch.as_tensor(np.argsort(order), device=embeddings.device)]


def pad_token_lists(encoded: Mapping[str, Sequence[Sequence[int]]], tokenizer: Any,
                    rows: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """Unpadded token lists (a tokenizer's output without ``padding``) -> padded int64 tensors.

    What ``tokenizer.pad(..., return_tensors="pt")`` returns, with the same pad values
    (``pad_token_id``, ``pad_token_type_id``, 0 for masks, 1 for ``special_tokens_mask``) and
    ``tokenizer.padding_side``, padded to the longest of ``rows`` (default: all). Built with one
    vectorised numpy fill per key instead of transformers' per-row Python padding and tensor
    conversion, which cost as much as the tokenisation itself for short texts.
    """
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token (tokenizer.pad_token), so batches cannot be padded; set "
                         "tokenizer.pad_token (e.g. to tokenizer.eos_token) before encoding")
    first = next(iter(encoded.values()))
    rows = range(len(first)) if rows is None else rows
    lengths = np.fromiter((len(first[i]) for i in rows), dtype=np.int64, count=len(rows))  # (B,)
    width = int(lengths.max()) if len(lengths) else 0
    columns = np.arange(width)
    if tokenizer.padding_side == "left":
        filled = columns[None, :] >= (width - lengths)[:, None]  # (B, L)
    else:
        filled = columns[None, :] < lengths[:, None]  # (B, L)
    pad_values = {"input_ids": tokenizer.pad_token_id, "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0),
                  "special_tokens_mask": 1}
    padded = {}
    for key, lists in encoded.items():
        values = np.full((len(rows), width), pad_values.get(key, 0), dtype=np.int64)
        # Row-major boolean assignment takes the flat values row by row: each row's tokens in order.
        values[filled] = np.fromiter(itertools.chain.from_iterable(lists[i] for i in rows), dtype=np.int64,
                                     count=int(lengths.sum()))
        padded[key] = torch.from_numpy(values)
    return padded
