"""One calm console: progress bars on or off as a whole, and one line per evaluation above the bar.

``training.show_progress_bar=false`` has to reach bars that textdml does not draw itself
(transformers' "Loading weights", datasets' "Generating split", huggingface_hub's downloads), so
:func:`quiet_progress_bars` switches those libraries' own switches and textdml's together.
Evaluation lines go through ``tqdm.write``, which prints above an active bar instead of through it.
"""

from __future__ import annotations

import contextlib
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


def format_evaluation(step: int, results: Mapping[str, float], primary: str | None = None, limit: int = 8) -> str:
    """One line for one evaluation: the primary metric first, then up to ``limit`` others.

    Example:
        >>> format_evaluation(75, {"recall@1": 0.5, "ndcg@10": 0.75}, primary="ndcg@10")
        'eval step 75: ndcg@10 0.7500 | recall@1 0.5000'
    """
    names = [primary] if primary in results else []
    names += [name for name in results if name != primary][: max(0, limit - len(names))]
    parts = [f"{name} {results[name]:.4f}" if isinstance(results[name], float) else f"{name} {results[name]}"
             for name in names]
    more = len(results) - len(names)
    return f"eval step {step}: " + " | ".join(parts) + (f" (+{more} more in metrics.jsonl)" if more > 0 else "")


def write_line(text: str) -> None:
    """Print one line above any active progress bar (to stdout)."""
    tqdm.write(text)
