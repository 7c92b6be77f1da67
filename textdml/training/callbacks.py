"""Callbacks: user code that runs when the trainer logs, evaluates or saves.

Subclass ``Callback`` and override what you need; pass instances to ``train(callbacks=[...])``
or name classes in ``training.callbacks`` (dotted paths, built with no arguments). ``on_log``,
``on_evaluate`` and ``on_save`` run on the main process only, after the built-in logging
(``metrics.jsonl`` and the trackers). The run hooks (``on_train_begin``, ``step_metrics``,
``on_step_end``, ``on_train_end``) run on every process and get the loop's ``FitRun`` (its
``state``, ``parts``, ``accelerator``, ``log``): textdml's diagnostics, re-mining and final save
are callbacks of this kind.

Example:
    >>> class PrintEvaluations(Callback):
    ...     def on_evaluate(self, metrics, state):
    ...         print(state.global_step, round(metrics["ndcg@10"], 2))
    >>> callbacks = CallbackList([PrintEvaluations()])
    >>> from textdml.training.checkpoint import TrainerState
    >>> callbacks.on_evaluate({"ndcg@10": 0.5}, TrainerState(global_step=3))
    3 0.5
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from textdml.training.checkpoint import TrainerState

SaveKind = Literal["checkpoint", "best", "final"]


class Callback:
    """Hooks called by the training loop; each does nothing unless overridden."""

    def on_log(self, record: dict[str, Any], state: TrainerState) -> None:
        """A row of ``metrics.jsonl`` was written: training loss / lr / speed, or evaluation results."""

    def on_evaluate(self, metrics: dict[str, float], state: TrainerState) -> None:
        """An evaluation finished; ``metrics`` are the evaluator's results (without the ``eval_`` prefix)."""

    def on_save(self, path: Path, kind: SaveKind, state: TrainerState) -> None:
        """A checkpoint, the best model or the final model was written to ``path``."""

    def on_train_begin(self, run: Any) -> None:
        """Set up and resumed, before the first step (and before ``eval_on_start``)."""

    def step_metrics(self, run: Any, batch: dict[str, Any]) -> dict[str, float]:
        """Extra metrics for the logging record of this step (e.g. ``health_*``)."""
        return {}

    def on_step_end(self, run: Any) -> None:
        """After an optimiser step and its logging, before its evaluation and checkpoint; may call
        ``run.replace_loader(loader, sampler)`` to train on from new data."""

    def on_train_end(self, run: Any) -> None:
        """After the last step, under the signal handler that lets the final save finish."""


class CallbackList(Callback):
    """Calls every callback in order."""

    def __init__(self, callbacks: Iterable[Callback] = ()):
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(f"callbacks must subclass textdml.training.callbacks.Callback, got "
                                f"{type(callback).__name__}")

    def on_log(self, record: dict[str, Any], state: TrainerState) -> None:
        for callback in self.callbacks:
            callback.on_log(record, state)

    def on_evaluate(self, metrics: dict[str, float], state: TrainerState) -> None:
        for callback in self.callbacks:
            callback.on_evaluate(metrics, state)

    def on_save(self, path: Path, kind: SaveKind, state: TrainerState) -> None:
        for callback in self.callbacks:
            callback.on_save(path, kind, state)

    def on_train_begin(self, run: Any) -> None:
        for callback in self.callbacks:
            callback.on_train_begin(run)

    def step_metrics(self, run: Any, batch: dict[str, Any]) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for callback in self.callbacks:
            metrics |= callback.step_metrics(run, batch)
        return metrics

    def on_step_end(self, run: Any) -> None:
        for callback in self.callbacks:
            callback.on_step_end(run)

    def on_train_end(self, run: Any) -> None:
        for callback in self.callbacks:
            callback.on_train_end(run)


def create_callbacks(targets: list[str], given: Iterable[Callback] = ()) -> CallbackList:
    """``training.callbacks`` (dotted class paths) built, after the callbacks passed in code."""
    from textdml.registry import import_target

    built = []
    for i, target in enumerate(targets):
        try:
            obj = import_target(target, f"training.callbacks[{i}]")
        except (ImportError, AttributeError, ValueError) as err:
            raise ValueError(f"training.callbacks[{i}]: cannot import {target!r} ({err}); give a dotted path "
                             "like my_package.callbacks.MyCallback") from err
        built.append(build_callback(obj, f"training.callbacks[{i}]", target))
    return CallbackList([*given, *built])


def build_callback(obj: Any, key: str, target: str) -> Callback:
    """A ``Callback`` instance as is, a ``Callback`` subclass built with no arguments; anything else is refused
    before it is called (a dotted path may name any callable, ``os.system`` included)."""
    import inspect

    if isinstance(obj, Callback):
        return obj
    if not (inspect.isclass(obj) and issubclass(obj, Callback)):
        kind = "a class but not a Callback subclass" if inspect.isclass(obj) else f"a {type(obj).__name__}, not a class"
        raise ValueError(f"{key}: {target!r} is {kind}; name a subclass of textdml.training.callbacks.Callback "
                         "(it is built with no arguments)")
    return obj()
