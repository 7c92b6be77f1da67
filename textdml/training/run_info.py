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
                      peak_memory_bytes=memory, peak_memory_kind=kind, widget_texts=widget_texts(data))


def widget_texts(data: Any, candidates: int = 3) -> list[str]:
    """The first anchor and the first positives of the training data (text pairs only)."""
    roles = data.roles
    if getattr(roles, "kind", None) not in ("pairs", "triplets", "scored_pairs") or not roles.positive:
        return []
    rows = list(data.dataset.take(candidates)) if hasattr(data.dataset, "take") and not hasattr(data.dataset, "select") \
        else [data.dataset[i] for i in range(min(candidates, len(data.dataset)))]
    if not rows:
        return []
    texts = [str(rows[0][roles.anchor]), *(str(row[roles.positive]) for row in rows)]
    return list(dict.fromkeys(texts))
