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
    """``embed`` each batch of ``batch_size`` ``items`` in eval mode without grad: float32 ``(N, dim)``.

    ``prepare`` (tokenisation, image decoding) turns a batch into ``embed``'s input; the next
    batch is prepared in a helper thread while the current one runs through the model. Tokenizers
    (Rust), PIL and torch release the GIL, so on two cores the two overlap instead of taking turns;
    the order of the outputs and the values are those of ``embed(prepare(batch))`` one by one.
    """
    batches = [items[start : start + batch_size] for start in range(0, len(items), batch_size)]
    return run_given_batches(module, batches, embed, show_progress_bar, description, dim, prepare)


def run_given_batches(module: nn.Module, batches: Sequence[Sequence[Any]], embed: Callable[[Any], torch.Tensor],
                      show_progress_bar: bool | None, description: str, dim: int,
                      prepare: Callable[[Any], Any] | None = None) -> torch.Tensor:
    """:func:`run_batches` over batches already cut (of any sizes): outputs in the batches' order."""
    if show_progress_bar is None:
        show_progress_bar = logger.getEffectiveLevel() <= logging.INFO and len(batches) > 10
    if bars_silenced():  # training.show_progress_bar=false, or an evaluation inside the training bar
        show_progress_bar = False
    was_training = module.training
    module.eval()
    chunks = []
    try:
        with torch.inference_mode(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="textdml-prepare") as helper:
            ahead = helper.submit(prepare, batches[0]) if prepare is not None and batches else None
            for number, batch in enumerate(tqdm(batches, desc=description, disable=not show_progress_bar)):
                if ahead is None:
                    inputs = batch
                else:  # one batch prepared ahead: memory stays bounded
                    inputs = ahead.result()
                    ahead = helper.submit(prepare, batches[number + 1]) if number + 1 < len(batches) else None
                chunks.append(embed(inputs).float())
    finally:
        module.train(was_training)
    return torch.cat(chunks) if chunks else torch.empty(0, dim, device=module_device(module))


def module_device(module: nn.Module) -> torch.device:
    """Where a module's tensors are; the CPU for one without any (an exported encoder runs outside torch)."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return torch.device("cpu")


def run_length_sorted(module: nn.Module, texts: list[str], embed: Callable[[Any], torch.Tensor],
                      batch_size: int, show_progress_bar: bool | None, description: str, dim: int,
                      prepare: Callable[[list[str]], Any] | None = None) -> torch.Tensor:
    """``run_batches`` over texts sorted longest first (little padding per batch), in input order again."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    embeddings = run_batches(module, [texts[i] for i in order], embed, batch_size, show_progress_bar, description, dim,
                             prepare)
    return embeddings[torch.as_tensor(np.argsort(order), device=embeddings.device)]


def run_token_sorted(module: nn.Module, texts: list[str], tokenizer: Any, max_length: int,
                     embed: Callable[[dict[str, torch.Tensor]], torch.Tensor], batch_size: int,
                     show_progress_bar: bool | None, description: str, dim: int) -> torch.Tensor:
    """Texts tokenised once, sorted by token count and cut into batches of even token budgets
    (:func:`token_budget_batches`), run in eval mode without grad; outputs in input order.

    Sorting by characters (sentence-transformers' way) leaves ~28-30% of a batch's tokens padding
    on WordNet texts; by token count with even budgets, 0.5% over 50k texts and 12% over an index
    chunk of 1,024, so the encoder runs on a fifth to a quarter fewer tokens. Each batch is padded
    in the helper thread while the model runs the one before.
    """
    if not texts:
        return run_given_batches(module, [], embed, show_progress_bar, description, dim)
    tokens = PackedTokens.tokenize(tokenizer, texts, max_length)
    order = np.argsort(-tokens.lengths, kind="stable")
    batches = token_budget_batches(tokens.lengths[order], batch_size)
    embeddings = run_given_batches(module, [order[rows] for rows in batches], embed, show_progress_bar,
                                   description, dim, prepare=lambda rows: tokens.padded(rows, tokenizer))
    return embeddings[torch.as_tensor(np.argsort(order), device=embeddings.device)]


def token_budget_batches(sorted_lengths: np.ndarray, batch_size: int) -> list[slice]:
    """Cut token counts sorted longest first into batches of about ``batch_size`` x the mean count tokens.

    Long texts go in fewer rows, short ones in more (at most 4 x ``batch_size``), so a batch pads to
    its longest text with little waste even when few batches share the texts (an index chunk of
    1,024 documents, 8 batches), and no batch needs more memory than an average one of ``batch_size``.

    Example:
        >>> token_budget_batches(np.array([24, 8, 8, 8, 4, 4, 4, 4, 4, 4, 4, 4]), 4)  # 4 x mean 6.7: 26 tokens
        [slice(0, 1, None), slice(1, 4, None), slice(4, 10, None), slice(10, 12, None)]
    """
    budget = batch_size * max(1.0, float(sorted_lengths.mean()))
    batches, start = [], 0
    while start < len(sorted_lengths):
        rows = int(min(max(1, budget // sorted_lengths[start]), 4 * batch_size))
        batches.append(slice(start, min(start + rows, len(sorted_lengths))))
        start += rows
    return batches


class PackedTokens:
    """Tokenised texts without padding, each key's values of every row end to end in one int64 array.

    Python lists of token ids cost ~36 bytes a token; packed, 8, so a million texts tokenised
    ahead of encoding fit in a few hundred MB.
    """

    TOKENIZE_BLOCK = 8192  # texts per tokenizer call: its Encoding objects are heavy and freed per block

    def __init__(self, values: dict[str, np.ndarray], lengths: np.ndarray):
        self.values = values
        self.lengths = lengths  # (N,)
        self.starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)  # (N,)

    @classmethod
    def tokenize(cls, tokenizer: Any, texts: list[str], max_length: int) -> PackedTokens:
        parts: dict[str, list[np.ndarray]] = {}
        lengths = []
        for start in range(0, len(texts), cls.TOKENIZE_BLOCK):
            encoded = tokenizer(texts[start : start + cls.TOKENIZE_BLOCK], truncation=True, max_length=max_length)
            ids = encoded["input_ids"]
            lengths.append(np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)))
            for key, lists in encoded.items():
                parts.setdefault(key, []).append(np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64))
        return cls({key: np.concatenate(arrays) for key, arrays in parts.items()}, np.concatenate(lengths))

    def padded(self, rows: Sequence[int], tokenizer: Any) -> dict[str, torch.Tensor]:
        """The rows as ``pad_token_lists`` pads them: to the longest of ``rows``, the tokenizer's pad values and side."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        # Flat positions of the rows' tokens, row after row: each row's start plus 0..length-1.
        within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        positions = np.repeat(self.starts[rows], lengths) + within
        return pad_flat({key: values[positions] for key, values in self.values.items()}, lengths, tokenizer)


def pad_token_lists(encoded: Mapping[str, Sequence[Sequence[int]]], tokenizer: Any,
                    rows: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """Unpadded token lists (a tokenizer's output without ``padding``) -> padded int64 tensors.

    What ``tokenizer.pad(..., return_tensors="pt")`` returns, with the same pad values
    (``pad_token_id``, ``pad_token_type_id``, 0 for masks, 1 for ``special_tokens_mask``) and
    ``tokenizer.padding_side``, padded to the longest of ``rows`` (default: all). Built with one
    vectorised numpy fill per key instead of transformers' per-row Python padding and tensor
    conversion, which cost as much as the tokenisation itself for short texts.
    """
    first = next(iter(encoded.values()))
    rows = range(len(first)) if rows is None else rows
    lengths = np.fromiter((len(first[i]) for i in rows), dtype=np.int64, count=len(rows))  # (B,)
    flat = {key: np.fromiter(itertools.chain.from_iterable(lists[i] for i in rows), dtype=np.int64,
                             count=int(lengths.sum())) for key, lists in encoded.items()}
    return pad_flat(flat, lengths, tokenizer)


def pad_flat(flat: Mapping[str, np.ndarray], lengths: np.ndarray, tokenizer: Any) -> dict[str, torch.Tensor]:
    """Rows given end to end (``flat[key]``: every row's values in turn; ``lengths``: per row) ->
    padded int64 tensors ``(B, longest)``, as :func:`pad_token_lists` describes."""
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token (tokenizer.pad_token), so batches cannot be padded; set "
                         "tokenizer.pad_token (e.g. to tokenizer.eos_token) before encoding")
    width = int(lengths.max()) if len(lengths) else 0
    columns = np.arange(width)
    if tokenizer.padding_side == "left":
        filled = columns[None, :] >= (width - lengths)[:, None]  # (B, L)
    else:
        filled = columns[None, :] < lengths[:, None]  # (B, L)
    pad_values = {"input_ids": tokenizer.pad_token_id, "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0),
                  "special_tokens_mask": 1}
    padded = {}
    for key, values in flat.items():
        array = np.full((len(lengths), width), pad_values.get(key, 0), dtype=np.int64)
        # Row-major boolean assignment takes the flat values row by row: each row's tokens in order.
        array[filled] = values
        padded[key] = torch.from_numpy(array)
    return padded
