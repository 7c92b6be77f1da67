"""One calm console: progress bars on or off as a whole, and one line per evaluation above the bar.

``training.show_progress_bar=false`` has to reach bars that textdml does not draw itself
(transformers' "Loading weights", datasets' "Generating split", huggingface_hub's downloads), so
:func:`quiet_progress_bars` switches those libraries' own switches and textdml's together.
Evaluation lines go through ``tqdm.write``, which prints above an active bar instead of through it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping

from tqdm.auto import tqdm

_quiet_depth = 0  # > 0 while inside quiet_progress_bars(True)


def bars_silenced() -> bool:
    """Whether textdml's own bars (encoding, indexing) must stay off."""
    return _quiet_depth > 0


@contextlib.contextmanager
def quiet_progress_bars(quiet: bool = True) -> Iterator[None]:
    """Within, no progress bar is drawn by textdml, transformers, datasets or huggingface_hub.

    ``quiet=False`` changes nothing (bars stay as each library has them). The libraries' previous
    settings are restored on exit.
    """
    global _quiet_depth
    if not quiet:
        yield
        return
    import datasets as datasets_lib  # its progress-bar switches are top-level
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as transformers_logging

    was_transformers = transformers_logging.is_progress_bar_enabled()
    was_datasets = datasets_lib.is_progress_bar_enabled()
    was_hub = not hub_utils.are_progress_bars_disabled()
    transformers_logging.disable_progress_bar()  # also huggingface_hub's
    datasets_lib.disable_progress_bars()
    _quiet_depth += 1
    try:
        yield
    finally:
        _quiet_depth -= 1
        if was_transformers:
            transformers_logging.enable_progress_bar()
        if was_datasets:
            datasets_lib.enable_progress_bars()
        (hub_utils.enable_progress_bars if was_hub else hub_utils.disable_progress_bars)()


SIZED_METRIC = re.compile(r"^(?:(?P<prefix>.+)_)?dim(?P<dim>\d+)_(?P<metric>.+)$")


def split_sizes(results: Mapping[str, float]) -> tuple[dict[str, float], dict[int, dict[str, float]]]:
    """Full-size metrics, and the Matryoshka ones (``<name>_dim<d>_<metric>``) by size under their full-size name.

    Example:
        >>> split_sizes({"ndcg@10": 0.8, "dim64_ndcg@10": 0.7})
        ({'ndcg@10': 0.8}, {64: {'ndcg@10': 0.7}})
    """
    full: dict[str, float] = {}
    sized: dict[int, dict[str, float]] = {}
    for name, value in results.items():
        match = SIZED_METRIC.match(name)
        if match is None:
            full[name] = value
            continue
        prefix = match["prefix"]
        sized.setdefault(int(match["dim"]), {})[f"{prefix}_{match['metric']}" if prefix else match["metric"]] = value
    return full, sized


def format_value(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else f"{value}"


def format_evaluation(step: int, results: Mapping[str, float], primary: str | None = None, limit: int = 8) -> str:
    """One line for one evaluation: the primary metric first, then up to ``limit`` others.

    Matryoshka sizes (``eval.truncate_dims``) add one part to the same line: the primary metric
    at each size, largest first, so that a per-size evaluation still prints a single line.

    Example:
        >>> format_evaluation(75, {"recall@1": 0.5, "ndcg@10": 0.75}, primary="ndcg@10")
        'eval step 75: ndcg@10 0.7500 | recall@1 0.5000'
        >>> format_evaluation(75, {"ndcg@10": 0.75, "dim64_ndcg@10": 0.7, "dim32_ndcg@10": 0.6}, primary="ndcg@10")
        'eval step 75: ndcg@10 0.7500 | ndcg@10 by size 64 0.7000, 32 0.6000'
    """
    full, sized = split_sizes(results)
    if primary is not None and primary not in full:  # the primary metric may itself be a sized one
        full, sized = dict(results), {}
    names = [primary] if primary in full else []
    names += [name for name in full if name != primary][: max(0, limit - len(names))]
    parts = [f"{name} {format_value(full[name])}" for name in names]
    shown = len(names)
    headline = names[0] if names else None
    by_size = [(dim, sized[dim][headline]) for dim in sorted(sized, reverse=True) if headline in sized[dim]]
    if by_size:
        parts.append(f"{headline} by size " + ", ".join(f"{dim} {format_value(value)}" for dim, value in by_size))
        shown += len(by_size)
    more = len(results) - shown
    return f"eval step {step}: " + " | ".join(parts) + (f" (+{more} more in metrics.jsonl)" if more > 0 else "")


def write_line(text: str) -> None:
    """Print one line above any active progress bar (to stdout)."""
    tqdm.write(text)
