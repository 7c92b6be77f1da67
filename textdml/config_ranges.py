"""Allowed ranges of the numeric settings of a ``RunConfig``, checked when a recipe is loaded.

Out-of-range values used to do surprising things (``max_steps=0`` trained a whole epoch,
``max_steps=-3`` saved the untrained model as ``final/``, ``warmup_ratio=2`` never left warm-up);
each is now an error naming the key, the value and the range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textdml.errors import ConfigError

if TYPE_CHECKING:
    from textdml.config import RunConfig


@dataclass(frozen=True)
class Range:
    """``low <= value`` (or ``<``) and ``value <= high`` (or ``<``); None: unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    hint: str = ""

    def contains(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return " and ".join(parts) or "finite"


POSITIVE_INT = Range(low=1)
POSITIVE = Range(low=0, low_open=True)
NON_NEGATIVE = Range(low=0)

# Keys are attribute paths below RunConfig; a None value (unset) is always allowed.
TRAINING_RANGES: dict[str, Range] = {
    "max_steps": Range(low=1, hint="leave it unset (null) to train training.epochs epochs"),
    "learning_rate": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "image_lr": POSITIVE,
    "text_lr": POSITIVE,
    "logit_scale_lr": POSITIVE,
    "warmup_ratio": Range(low=0, high=1, high_open=True, hint="the fraction of the steps spent warming up"),
    "max_grad_norm": Range(low=0, low_open=True, hint="null turns clipping off"),
    "seed": Range(low=0, high=2**32 - 1),
    "m_per_class": POSITIVE_INT,
    "max_tokens_per_batch": POSITIVE_INT,
    "bucket_rows": Range(low=1, hint="null pads each role as a whole"),
    "mini_batch_size": Range(low=1, hint="null lets the memory planner pick it"),
    "eval_steps": Range(low=1, hint="null evaluates at the end only"),
    "save_steps": Range(low=1, hint="null saves no intermediate checkpoints"),
    "save_total_limit": Range(low=1, hint="null keeps every checkpoint"),
    "num_workers": NON_NEGATIVE,
}
MODEL_RANGES: dict[str, Range] = {"max_seq_length": POSITIVE_INT, "dense_dim": POSITIVE_INT}
EVAL_RANGES: dict[str, Range] = {"max_corpus": POSITIVE_INT, "batch_size": POSITIVE_INT}
INDEX_RANGES: dict[str, Range] = {"batch_size": POSITIVE_INT, "dim": Range(low=1, hint="null stores the full vectors")}
DATA_RANGES: dict[str, Range] = {"max_rows": POSITIVE_INT}


def check_ranges(config: RunConfig) -> None:
    """Raise ``ConfigError`` for the first setting outside its range."""
    check_section(config.training, TRAINING_RANGES, "training")
    check_section(config.model, MODEL_RANGES, "model")
    check_section(config.eval, EVAL_RANGES, "eval")
    check_section(config.index, INDEX_RANGES, "index")
    sets = config.train if isinstance(config.train, list) else [config.train]
    for i, data in enumerate(sets):
        check_section(data, DATA_RANGES, "train" if not isinstance(config.train, list) else f"train[{i}]")
    if config.eval.data is not None:
        check_section(config.eval.data, DATA_RANGES, "eval.data")


def check_section(section: Any, ranges: dict[str, Range], where: str) -> None:
    for name, allowed in ranges.items():
        value = getattr(section, name)
        if value is None or allowed.contains(value):
            continue
        hint = f" ({allowed.hint})" if allowed.hint else ""
        raise ConfigError(f"{where}.{name} must be {allowed.describe()}, got {value!r}{hint}")
