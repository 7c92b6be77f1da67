"""One calm console: progress bars on or off as a whole, and one line per evaluation above the bar.

``training.show_progress_bar=false`` has to reach bars that textdml does not draw itself
(transformers' "Loading weights", datasets' "Generating split", huggingface_hub's downloads), so
:func:`quiet_progress_bars` switches those libraries' own switches and textdml's together.
Evaluation lines go through ``tqdm.write``, which prints above an active bar instead of through it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TextIO

from tqdm.auto import tqdm

_quiet_depth = 0  # > 0 while inside quiet_progress_bars(True)
TEXTDML_ROOT = Path(__file__).resolve().parent
LIBRARY_LOGGERS = ("httpx", "transformers", "datasets", "accelerate", "huggingface_hub", "peft")


def bars_silenced() -> bool:
    """Whether textdml's own bars (encoding, indexing) must stay off."""
    return _quiet_depth > 0


@contextlib.contextmanager
def library_bars_off() -> Iterator[None]:
    """Within, transformers, datasets and huggingface_hub draw no bar; their settings are restored on exit."""
    import datasets as datasets_lib  # its progress-bar switches are top-level
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as transformers_logging

    was_transformers = transformers_logging.is_progress_bar_enabled()
    was_datasets = datasets_lib.is_progress_bar_enabled()
    was_hub = not hub_utils.are_progress_bars_disabled()
    transformers_logging.disable_progress_bar()  # also huggingface_hub's
    datasets_lib.disable_progress_bars()
    try:
        yield
    finally:
        if was_transformers:
            transformers_logging.enable_progress_bar()
        if was_datasets:
            datasets_lib.enable_progress_bars()
        (hub_utils.enable_progress_bars if was_hub else hub_utils.disable_progress_bars)()


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
    with library_bars_off():
        _quiet_depth += 1
        try:
            yield
        finally:
            _quiet_depth -= 1


@contextlib.contextmanager
def own_bars_shown(show: bool = True) -> Iterator[None]:
    """Within, textdml's own bars (encoding, indexing) are drawn again inside ``quiet_progress_bars``.

    For work before the training bar opens or after it closes (an evaluation of the starting or the
    final model): minutes with no bar at all would look like a hang. ``show=False`` changes nothing.
    """
    global _quiet_depth
    if not show:
        yield
        return
    depth, _quiet_depth = _quiet_depth, 0
    try:
        yield
    finally:
        _quiet_depth = depth


def is_verbose(flag: bool = False) -> bool:
    """``--verbose`` or ``TEXTDML_VERBOSE=1``: the other libraries' bars, logs and FutureWarnings stay on."""
    return flag or os.environ.get("TEXTDML_VERBOSE", "").lower() in ("1", "true", "yes", "on")


def one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                     file: TextIO | None = None, line: str | None = None) -> None:
    """``warnings.showwarning`` for the CLI: one line, no source line; textdml's own say ``textdml: warning:``."""
    text = " ".join(str(message).split())
    package = package_of(filename)
    prefix = "textdml: warning: " if package == "textdml" else f"warning ({package}): "
    try:
        print(prefix + text, file=file or sys.stderr)
    except OSError:  # stderr gone (a closed pipe): a warning is not worth a crash
        pass


def package_of(filename: str) -> str:
    """The top-level package a source file belongs to (``textdml`` for this package's own files)."""
    path = Path(filename).resolve()
    if TEXTDML_ROOT in path.parents:
        return "textdml"
    parts = path.parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts and parts.index(marker) + 1 < len(parts):
            return parts[parts.index(marker) + 1].removesuffix(".py")
    return path.stem


@contextlib.contextmanager
def cli_console(verbose: bool = False) -> Iterator[None]:
    """The CLI's console: one line per warning, and other libraries quiet unless ``verbose``.

    Quiet means no transformers / datasets / huggingface_hub bars ("Loading weights", "Generating
    train split", "Creating parquet"), their loggers at ERROR, and no FutureWarning or
    DeprecationWarning raised outside textdml (peft's on every LoRA load). textdml's own bars and
    evaluation lines stay. Everything is restored on exit.
    """
    verbose = is_verbose(verbose)
    loggers = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    with warnings.catch_warnings(), (contextlib.nullcontext() if verbose else library_bars_off()):
        warnings.showwarning = one_line_warning
        if not verbose:
            for category in (FutureWarning, DeprecationWarning):
                warnings.filterwarnings("ignore", category=category, module=r"(?!textdml\b)")
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING if verbose else logging.ERROR)
        try:
            yield
        finally:
            for name, level in loggers.items():
                logging.getLogger(name).setLevel(level)


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
