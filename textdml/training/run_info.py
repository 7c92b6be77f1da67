"""What a run was: data sizes, parameters, time, hardware and memory (for the log and the model card)."""

from __future__ import annotations

import logging
import platform
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

SAMPLE_ROWS = 3  # rows shown on the card, as sentence-transformers' cards show them
SAMPLE_CHARS = 200  # a longer value is cut on the card
STAT_ROWS = 1000  # rows tokenised for the token statistics: a sample, not the whole set


@dataclass
class RunSummary:
    """Facts about a finished run that the config alone does not tell."""

    train_rows: list[int | None] = field(default_factory=list)  # rows of each train set (None: streaming)
    eval_size: str | None = None  # e.g. "200 queries, 180 documents"
    miner: Any = None
    trainable_parameters: int = 0
    total_parameters: int = 0
    train_runtime: float = 0.0  # seconds in training steps
    global_step: int = 0
    hardware: str = ""
    peak_memory_bytes: int | None = None
    peak_memory_kind: str = ""  # what peak_memory_bytes measures
    widget_texts: list[str] = field(default_factory=list)  # an anchor, then candidate texts (the card's widget)
    train_samples: list[dict[str, str]] = field(default_factory=list)  # the first rows of the (first) train set
    # Tokens per text of each text column over the first STAT_ROWS rows: column -> (min, mean, max).
    token_stats: dict[str, tuple[int, float, int]] = field(default_factory=dict)
    token_stat_rows: int = 0


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, each shared tensor counted once."""
    unique = {id(p): p for p in model.parameters()}
    return sum(p.numel() for p in unique.values() if p.requires_grad), sum(p.numel() for p in unique.values())


def log_parameter_counts(model: nn.Module) -> tuple[int, int]:
    trainable, total = count_parameters(model)
    logger.info("trainable parameters: %s of %s (%.2f%%)", f"{trainable:,}", f"{total:,}",
                100 * trainable / max(total, 1))
    return trainable, total


def hardware_description(accelerator: Any) -> str:
    device = accelerator.device
    processes = accelerator.num_processes
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        name = "Apple MPS"
    else:
        name = f"CPU ({platform.machine() or 'unknown'}, {torch.get_num_threads()} threads)"
    return f"{processes} x {name}" if processes > 1 else name


def peak_memory(device: torch.device) -> tuple[int | None, str]:
    """Peak accelerator memory allocated by torch, or on CPU the process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "peak GPU memory allocated"
    try:
        import resource
    except ImportError:  # Windows
        return None, ""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (peak if sys.platform == "darwin" else peak * 1024), "peak process memory (RSS)"


def describe_eval_size(evaluator: Any) -> str | None:
    """Sizes of an evaluator's held-out data, from the attributes textdml's evaluators keep."""
    if evaluator is None:
        return None
    if hasattr(evaluator, "evaluators"):
        return describe_eval_size(evaluator.evaluators[0])
    if hasattr(evaluator, "queries") and hasattr(evaluator, "corpus"):
        return f"{len(evaluator.queries):,} queries, {len(evaluator.corpus):,} documents"
    if hasattr(evaluator, "images"):
        return f"{len(evaluator.images):,} images"
    if hasattr(evaluator, "texts"):
        return f"{len(evaluator.texts):,} texts"
    return None


def summarize_run(config: Any, data: Any, evaluator: Any, task: Any, accelerator: Any, train_runtime: float,
                  global_step: int) -> RunSummary:
    from datasets import IterableDataset

    if data.set_lengths is not None:
        rows: list[int | None] = list(data.set_lengths)
    else:
        rows = [None if isinstance(data.dataset, IterableDataset) else len(data.dataset)]
    trainable, total = count_parameters(task.embedder)
    memory, kind = peak_memory(accelerator.device)
    if memory is not None:
        logger.info("%s: %.1f MiB", kind, memory / 2**20)
    return RunSummary(train_rows=rows, eval_size=describe_eval_size(evaluator), miner=getattr(task, "miner", None),
                      trainable_parameters=trainable, total_parameters=total, train_runtime=train_runtime,
                      global_step=global_step, hardware=hardware_description(accelerator),
                      peak_memory_bytes=memory, peak_memory_kind=kind, widget_texts=widget_texts(data),
                      train_samples=data_samples(data),
                      **token_statistics(data, getattr(task.embedder, "tokenizer", None)))


def widget_texts(data: Any, candidates: int = 3) -> list[str]:
    """The first anchor and the first positives of the training data (text pairs only)."""
    roles = data.roles
    if getattr(roles, "kind", None) not in ("pairs", "triplets", "scored_pairs") or not roles.positive:
        return []
    rows = first_rows(data.dataset, candidates)
    if not rows:
        return []
    texts = [str(rows[0][roles.anchor]), *(str(row[roles.positive]) for row in rows)]
    return list(dict.fromkeys(texts))


def first_rows(dataset: Any, count: int) -> list[dict[str, Any]]:
    """The first ``count`` rows of a map-style or streaming data set."""
    if hasattr(dataset, "take") and not hasattr(dataset, "select"):  # streaming: never read past them
        return list(dataset.take(count))
    return [dataset[i] for i in range(min(count, len(dataset)))]


def shown_columns(roles: Any) -> list[str]:
    """The columns the training read, in role order (texts, then label or score)."""
    columns = [*getattr(roles, "text_columns", []), getattr(roles, "label", None), getattr(roles, "score", None)]
    return list(dict.fromkeys(c for c in columns if c))


def data_samples(data: Any, rows: int = SAMPLE_ROWS) -> list[dict[str, str]]:
    """The first rows of the training data, each value as (cut) text, for the card's samples table."""
    columns = shown_columns(data.roles)
    if not columns:
        return []
    try:
        records = first_rows(data.dataset, rows)
    except Exception as err:  # noqa: BLE001 - the card goes without samples, the run does not fail
        logger.debug("no training samples for the card: %s", err)
        return []

    def cut(value: Any) -> str:
        text = str(value)
        return text if len(text) <= SAMPLE_CHARS else text[: SAMPLE_CHARS - 1] + "…"

    return [{c: cut(record[c]) for c in columns if c in record} for record in records]


def token_statistics(data: Any, tokenizer: Any, rows: int = STAT_ROWS) -> dict[str, Any]:
    """``token_stats`` and ``token_stat_rows`` of the text columns (before truncation), or nothing.

    Only for text models (``tokenizer`` given) on text columns; a column of lists (several negatives)
    is skipped.
    """
    columns = getattr(data.roles, "text_columns", [])
    if tokenizer is None or not columns:
        return {}
    try:
        records = first_rows(data.dataset, rows)
        stats = {}
        for column in columns:
            texts = [record[column] for record in records if isinstance(record.get(column), str)]
            if not texts:
                continue
            lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]]
            stats[column] = (min(lengths), sum(lengths) / len(lengths), max(lengths))
    except Exception as err:  # noqa: BLE001 - the card goes without statistics, the run does not fail
        logger.debug("no token statistics for the card: %s", err)
        return {}
    return {"token_stats": stats, "token_stat_rows": len(records)} if stats else {}
