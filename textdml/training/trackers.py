"""Experiment trackers (``training.report_to``) through Accelerate's ``log_with``.

Accelerate quietly drops a tracker whose package is missing; here a name that is unknown or not
installed is an error that says what to install, before any model is loaded.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

from textdml.registry import did_you_mean

# Tracker name (Accelerate's) -> (module to import, package to pip install).
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
    "trackio": ("trackio", "trackio"),
    "comet_ml": ("comet_ml", "comet-ml"),
    "aim": ("aim", "aim"),
    "clearml": ("clearml", "clearml"),
    "dvclive": ("dvclive", "dvclive"),
    "swanlab": ("swanlab", "swanlab"),
}
# Config keys never sent to a tracker (credentials, and tracker arguments that often carry them).
SECRET_KEY = re.compile(r"api_key|token|secret|password|tracker_kwargs", re.IGNORECASE)
# Trackers whose run (not project) name can be set, and the init keyword that sets it.
RUN_NAME_KEYWORD = {"wandb": "name", "mlflow": "run_name", "trackio": "name", "swanlab": "experiment_name"}


def is_installed(name: str) -> bool:
    return importlib.util.find_spec(TRACKERS[name][0]) is not None


def resolve_trackers(report_to: list[str] | str | None) -> list[str]:
    """The trackers to log to: ``None`` means TensorBoard when it is installed; ``"all"`` every installed one."""
    if report_to is None:
        return ["tensorboard"] if is_installed("tensorboard") else []
    if isinstance(report_to, str):
        report_to = [report_to]
    names: list[str] = []
    for i, name in enumerate(report_to):
        if name in ("none", "all"):
            if len(report_to) > 1:
                raise ValueError(f"training.report_to: {name!r} stands alone, got {report_to}")
            return [] if name == "none" else [n for n in TRACKERS if is_installed(n)]
        if name not in TRACKERS:
            raise ValueError(f"training.report_to[{i}]: unknown tracker {name!r}: "
                             f"{did_you_mean(name, [*TRACKERS, 'none', 'all'])}")
        if not is_installed(name):
            raise ValueError(f"training.report_to[{i}]: tracker {name!r} is not installed: pip install "
                             f"{TRACKERS[name][1]} (or remove it from training.report_to)")
        if name not in names:
            names.append(name)
    return names


def flat_hyperparameters(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"training": {"batch_size": 8}}`` -> ``{"training.batch_size": 8}``; other values as strings,
    because TensorBoard's hparams and MLflow params take only scalars."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if SECRET_KEY.search(name):  # trackers may be public dashboards: no credentials
            continue
        if isinstance(value, dict) and value:
            flat.update(flat_hyperparameters(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def init_kwargs(trackers: list[str], run_name: str, user_kwargs: dict[str, dict[str, Any]],
                resumed_step: int | None = None) -> dict[str, dict[str, Any]]:
    """Per-tracker init arguments: the run name where the tracker takes one, then the user's own.

    ``resumed_step``: the step of the checkpoint a run resumes from. TensorBoard then purges what
    the stopped run logged after it (``purge_step``), so the resumed steps replace those scalars
    instead of being drawn as a second curve over them.
    """
    unknown = [name for name in user_kwargs if name not in TRACKERS]
    if unknown:
        raise ValueError(f"training.tracker_kwargs: unknown tracker {unknown[0]!r}: {did_you_mean(unknown[0], list(TRACKERS))}")
    kwargs = {}
    for name in trackers:
        kwargs[name] = {RUN_NAME_KEYWORD[name]: run_name} if name in RUN_NAME_KEYWORD else {}
        if name == "tensorboard" and resumed_step:
            kwargs[name]["purge_step"] = resumed_step + 1  # the checkpoint's own step was logged before it was saved
        kwargs[name].update(user_kwargs.get(name) or {})
    return kwargs


def tracker_logging_dir(output_dir: Path) -> Path:
    """Where file-based trackers (TensorBoard, Aim) write: ``<output_dir>/tensorboard/<project>``."""
    return Path(output_dir) / "tensorboard"


def numeric_values(record: dict[str, Any]) -> dict[str, float | int]:
    """What a tracker can plot: the record's numbers, without the step."""
    return {key: value for key, value in record.items()
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)}


# MLflow takes metric names of letters, digits and _-. :/ only ("ndcg@10" is refused).
MLFLOW_UNSAFE = re.compile(r"[^\w\-. :/]")


def log_to_trackers(accelerator: Any, values: dict[str, float | int], step: int) -> None:
    """``accelerator.log``, with each tracker's naming rules applied (main process only)."""
    if not accelerator.is_main_process:
        return
    for tracker in accelerator.trackers:
        if tracker.name == "mlflow":
            tracker.log({MLFLOW_UNSAFE.sub(lambda m: "_at_" if m.group() == "@" else "_", k): v
                         for k, v in values.items()}, step=step)
        else:
            tracker.log(values, step=step)
