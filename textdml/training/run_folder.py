"""One run per ``output_dir``: a stamp (the config's fingerprint) in the folder and in every
checkpoint, atomic folder and file writes, and ``metrics.jsonl`` kept in step with the checkpoint.

Two runs sharing a folder would mix: checkpoint rotation keeps the highest step numbers (another
run's), and ``resume_from_checkpoint=latest`` would resume the other run. So a folder that holds
another run is an error unless ``training.overwrite_output_dir=true``, and a checkpoint written by
another config is refused unless ``training.force_resume=true``.

``overwrite_output_dir`` replaces the old run only once the new one has something to show: what the
old run wrote is moved into ``<output_dir>/.previous-run`` and deleted when the new run saves its
first checkpoint (or its final model). A new run that fails before that (a typo in the loss, a
missing file, a wrong column or metric name, a crash at step 1) puts the old run back; after a
kill, the next start in the folder does.

The fingerprint covers what changes the trained weights (model, data, loss, miner, optimisation);
operational settings (where to save, how often to log, evaluate or checkpoint, progress bars,
workers, the index section) may change between a run and its resume.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from textdml.outputs import remove_path

logger = logging.getLogger(__name__)

RUN_STAMP = "run.json"
RUN_CONFIG = "run_config.json"
METRICS = "metrics.jsonl"
# What a run writes into its folder: a folder holding one of these holds a run.
RUN_ARTIFACTS = ("checkpoints", "final", "best", METRICS, "tensorboard", RUN_STAMP, RUN_CONFIG)
# overwrite_output_dir replaces exactly these (the artifacts and the diagnostics), never anything else.
RUN_FILES = (*RUN_ARTIFACTS, "diagnostics", "preflight.json", "report.html")
PREVIOUS = ".previous-run"  # the replaced run, until the new one saves its first checkpoint
# Dotted keys (or prefixes) that do not change the weights a run produces.
OPERATIONAL = ("training.output_dir", "training.run_name", "training.eval_on_start",
               "training.resume_from_checkpoint", "training.overwrite_output_dir",
               "training.force_resume", "training.show_progress_bar", "training.num_workers",
               "training.logging_steps", "training.save_steps", "training.save_total_limit", "training.eval_steps",
               "training.metric_for_best_model", "training.preflight", "training.report", "training.report_to",
               "training.tracker_project", "training.tracker_kwargs", "training.callbacks", "training.push_to_hub",
               "training.hub_private", "mine.output_dir", "eval", "index")
PARTIAL = ".partial-"


class RunFolderError(ValueError):
    """``output_dir`` or a checkpoint belongs to another run (or is not a folder)."""


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def is_operational(key: str) -> bool:
    return any(key == op or key.startswith(op + ".") for op in OPERATIONAL)


def run_identity(config_dict: dict[str, Any]) -> dict[str, Any]:
    """The settings that define a run's weights, flattened (``config_dict`` already redacted)."""
    return {k: v for k, v in flatten(config_dict).items() if not is_operational(k)}


def config_fingerprint(identity: dict[str, Any]) -> str:
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe_differences(old: dict[str, Any], new: dict[str, Any], limit: int = 5) -> str:
    """``training.learning_rate 0.001 -> 0.002, loss.name ...`` for the first ``limit`` changed keys."""
    def show(flat: dict[str, Any], key: str) -> str:
        return json.dumps(flat[key], default=str) if key in flat else "<unset>"

    keys = sorted(k for k in old.keys() | new.keys() if (k in old, old.get(k)) != (k in new, new.get(k)))
    shown = [f"{k} {show(old, k)} -> {show(new, k)}" for k in keys[:limit]]
    return ", ".join(shown) + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "") if keys else \
        "the saved config could not be compared"


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def saved_identity(folder: Path) -> dict[str, Any]:
    saved = read_json(folder / RUN_CONFIG)
    return run_identity(saved) if saved is not None else {}


def present_artifacts(output_dir: Path) -> list[str]:
    return [name for name in RUN_ARTIFACTS if name not in (RUN_STAMP, RUN_CONFIG) and (output_dir / name).exists()]


def check_output_dir(output_dir: Path) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise RunFolderError(f"training.output_dir {str(output_dir)!r} is a file, not a folder: choose a folder "
                             "(it is created if missing)")


def describe_other_run(output_dir: Path, fingerprint: str, identity: dict[str, Any]) -> str | None:
    """What another config's run left in ``output_dir`` (``"final, metrics.jsonl; its config differs:
    ..."``), or None when the folder holds no run, or one of this config."""
    present = present_artifacts(output_dir)
    stamp = read_json(output_dir / RUN_STAMP)
    if not present or stamp is None or stamp.get("config_sha256") == fingerprint:
        return None
    return f"{', '.join(present)}; its config differs: {describe_differences(saved_identity(output_dir), identity)}"


def prepare_run_folder(output_dir: Path, fingerprint: str, identity: dict[str, Any], *, resume: str | None,
                       overwrite: bool, force_resume: bool, checkpoints: list[Path], is_main: bool) -> None:
    """Refuse (or, with ``overwrite``, set aside) a folder that holds another run, before anything is written.

    Args:
        output_dir: the run folder.
        fingerprint: this run's ``config_fingerprint``.
        identity: this run's ``run_identity`` (to say what differs).
        resume: ``training.resume_from_checkpoint``.
        overwrite: ``training.overwrite_output_dir``.
        force_resume: ``training.force_resume``.
        checkpoints: the complete checkpoints in the folder, oldest first.
        is_main: only the main process moves and deletes.
    """
    check_output_dir(output_dir)
    if is_main:
        remove_partials(output_dir)
    other = describe_other_run(output_dir, fingerprint, identity)
    if other is not None and not (resume is not None and checkpoints and force_resume):
        if overwrite:
            set_aside_run(output_dir, is_main)
            return
        raise RunFolderError(
            f"training.output_dir {str(output_dir)!r} holds another run ({other}). Mixing them would rotate away "
            "this run's checkpoints and resume the other one: choose a new training.output_dir, set "
            "training.overwrite_output_dir=true to replace the old run"
            + (", or training.force_resume=true to continue the old checkpoints with this config" if checkpoints
               and resume is not None else "")
        )
    if checkpoints and resume is None:
        if overwrite:
            set_aside_run(output_dir, is_main)
            return
        raise RunFolderError(
            f"training.output_dir {str(output_dir)!r} already holds checkpoints of this run (up to "
            f"{checkpoints[-1].name}): resume with training.resume_from_checkpoint=latest, or set "
            "training.overwrite_output_dir=true to delete them and start over"
        )


def set_aside_run(output_dir: Path, is_main: bool) -> None:
    """Move what the previous run wrote (only the names a run writes) into ``.previous-run``."""
    if not is_main:
        return
    aside = output_dir / PREVIOUS
    logger.warning("training.overwrite_output_dir: the previous run in %s is moved to %s and deleted when this run "
                   "saves its first checkpoint", output_dir, aside)
    aside.mkdir()
    for name in RUN_FILES:
        path = output_dir / name
        if path.exists() or path.is_symlink():
            path.rename(aside / name)


def discard_previous_run(output_dir: Path) -> None:
    """This run saved a checkpoint or model: the run it replaces goes (main process only)."""
    aside = output_dir / PREVIOUS
    if aside.exists():
        shutil.rmtree(aside)
        logger.debug("this run saved a checkpoint or its final model: deleted the previous run (%s)", aside)


def restore_previous_run(output_dir: Path) -> None:
    """This run stopped before saving anything: remove what it wrote, put the previous run back."""
    aside = output_dir / PREVIOUS
    if not aside.is_dir():
        return
    for name in RUN_FILES:
        remove_path(output_dir / name)
    for path in aside.iterdir():
        path.rename(output_dir / path.name)
    aside.rmdir()
    logger.warning("this run stopped before its first checkpoint: the previous run is back in %s", output_dir)


def recover_previous_run(output_dir: Path, saved: bool) -> None:
    """A run killed while replacing another: keep the new run if it ``saved`` a checkpoint or model,
    else put the previous run back (main process only, before anything else looks at the folder)."""
    if (output_dir / PREVIOUS).is_dir():
        (discard_previous_run if saved else restore_previous_run)(output_dir)


@contextlib.contextmanager
def previous_run_restored_on_failure(output_dir: Path, is_main: bool) -> Iterator[None]:
    """Put a set-aside previous run back when the body fails before this run saved anything."""
    try:
        yield
    except BaseException:
        if is_main:
            restore_previous_run(output_dir)
        raise


def check_checkpoint_run(checkpoint: Path, fingerprint: str, identity: dict[str, Any], force: bool) -> None:
    """A checkpoint resumes only the config that wrote it (``force`` resumes it anyway)."""
    state = read_json(checkpoint / "trainer_state.json") or {}
    saved = state.get("config_sha256")
    if saved is None:
        logger.warning("%s has no run stamp (written by an older textdml): its config cannot be checked", checkpoint)
        return
    if saved == fingerprint:
        return
    differs = describe_differences(saved_identity(checkpoint), identity)
    if force:
        logger.warning("training.force_resume: resuming %s, written by another config (%s)", checkpoint, differs)
        return
    raise RunFolderError(
        f"checkpoint {str(checkpoint)!r} was written by another config ({differs}); resuming it would continue "
        "another run: use the config it was trained with, start a new training.output_dir, or set "
        "training.force_resume=true to resume it with this config"
    )


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file and rename it over ``path``: a reader sees the old or the new file."""
    tmp = path.with_name(f"{PARTIAL}{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def write_run_files(folder: Path, config_dict: dict[str, Any], fingerprint: str) -> None:
    """``run_config.json`` (redacted) and the ``run.json`` stamp."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / RUN_CONFIG, config_dict)
    write_json_atomic(folder / RUN_STAMP, {"config_sha256": fingerprint})


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; on success it replaces ``target``.

    A kill while writing leaves ``target`` as it was (the partial folder is removed at the next
    start); a kill between the two renames leaves no ``target`` at all, never a half-written one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{PARTIAL}{target.name}")
    old = target.with_name(f"{PARTIAL}{target.name}.old")
    for leftover in (partial, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    partial.mkdir()
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if target.exists():
        target.rename(old)
    partial.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def remove_partials(output_dir: Path) -> None:
    """Folders and files a killed save left behind (``.partial-*``)."""
    if not output_dir.is_dir():
        return
    for path in [*output_dir.glob(f"{PARTIAL}*"), *output_dir.glob(f"checkpoints/{PARTIAL}*")]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def truncate_metrics(path: Path, step: int) -> list[dict[str, Any]]:
    """Keep the records of steps up to ``step`` (the checkpoint resumed from; 0 for a fresh start).

    Returns the kept records. A resumed run would otherwise log its steps after the checkpoint a
    second time. A torn last line (a kill mid-write) is dropped; a path that is not a regular file
    (e.g. a pipe) is left alone.
    """
    if not path.is_file():
        return []
    kept, changed = [], False
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            changed = True
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
            kept.append(record)
        else:
            changed = True
    if changed:
        tmp = path.with_name(f"{PARTIAL}{path.name}.{os.getpid()}")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, path)
    return kept
