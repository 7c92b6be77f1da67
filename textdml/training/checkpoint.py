"""Checkpoints: Accelerate state (model, optimiser, scheduler, RNG) + the position in the data.

A checkpoint is written into a temporary folder and renamed into place, so a kill during saving
never leaves a half-written checkpoint that resume would pick up.

Resuming never runs code from a checkpoint: Accelerate unpickles registered states
(``custom_checkpoint_*.pkl``) with ``weights_only=False``, so every pickle of a checkpoint is
first read with ``weights_only=True`` (tensors, numbers, strings and containers only) and a file
that needs anything else is refused. A state that passes that check holds no code, so the full
unpickling that follows builds the same plain values. Saving checks the same, so a checkpoint
textdml writes always resumes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import pickle
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils.other import load as accelerate_load

from textdml.errors import first_line, is_disk_full, is_kind
from textdml.outputs import nearest_existing
from textdml.training.run_folder import RUN_CONFIG, discard_previous_run, write_json_atomic

STATE_FILE = "trainer_state.json"
LOW_DISK_BYTES = 64 << 20  # a write that failed with less free space than this failed for lack of it
# torch reports a failed write as a RuntimeError of its stream writer, with no errno and no "No space".
TORCH_WRITE_FAILURE = ("PytorchStreamWriter", "inline_container", "file write failed")
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class TrainerState:
    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0  # batches of the current epoch already consumed
    best_metric: float | None = None
    best_step: int | None = None
    mined_at_step: int = 0  # training.remine_every: the step whose mined table is in use
    config_sha256: str | None = None  # the run's stamp (see textdml.training.run_folder)


class CheckpointError(ValueError):
    """A checkpoint that cannot (or must not) be resumed."""


class SaveError(OSError):
    """A checkpoint or model could not be written (the message says where and why); what was saved before is intact."""


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = output_dir / "checkpoints"
    if not root.exists():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := CHECKPOINT.match(p.name)) and (p / STATE_FILE).exists()]
    return [p for _, p in sorted(found)]


def resolve_checkpoint(output_dir: Path, resume: str | None) -> Path | None:
    """``resume`` is a checkpoint folder, ``latest``, or None."""
    if resume is None:
        return None
    if resume == "latest":
        found = checkpoint_dirs(output_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / STATE_FILE).exists():
        raise FileNotFoundError(f"resume_from_checkpoint: {path} is not a complete checkpoint (no {STATE_FILE})")
    return path


def save_checkpoint(accelerator: Accelerator, output_dir: Path, state: TrainerState, total_limit: int | None,
                    keep: Path | None = None, config_dict: dict[str, Any] | None = None) -> Path:
    """Save the Accelerate state, ``trainer_state.json`` and (given) the redacted run config.

    Raises:
        SaveError / OSError(ENOSPC): the disk has less room than the last checkpoint takes, or a
            write failed (the partial folder is removed; earlier checkpoints are untouched).
    """
    root = output_dir / "checkpoints"
    final = root / f"checkpoint-{state.global_step}"
    partial = root / f".partial-checkpoint-{state.global_step}"
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)
    check_free_space(output_dir, final)
    accelerator.wait_for_everyone()
    with guard_write(final, "checkpoint", output_dir, partial if accelerator.is_main_process else None):
        accelerator.save_state(str(partial))
        if accelerator.is_main_process:
            for pickled in sorted(partial.glob("*.pkl")):
                if not loads_as_plain_data(pickled):
                    raise TypeError(f"{pickled.name}: a state registered for checkpointing is not plain data "
                                    "(tensors, numbers, strings, containers), so resuming would have to run "
                                    "pickled code")
            if config_dict is not None:
                write_json_atomic(partial / RUN_CONFIG, config_dict)
            (partial / STATE_FILE).write_text(json.dumps(asdict(state), indent=2))
            if final.exists():
                shutil.rmtree(final)
            partial.rename(final)
    if accelerator.is_main_process:
        rotate_checkpoints(output_dir, total_limit, keep)
        discard_previous_run(output_dir)  # this run has a checkpoint: a run it replaces goes now
    accelerator.wait_for_everyone()
    return final


def intact_note(output_dir: Path) -> str:
    """What a failed save left untouched, for its error message."""
    found = checkpoint_dirs(output_dir)
    if not found:
        return "no earlier checkpoint was touched"
    return (f"the last complete checkpoint {str(found[-1])!r} is intact (training.resume_from_checkpoint=latest "
            "resumes it)")


def check_free_space(output_dir: Path, target: Path) -> None:
    """Refuse a checkpoint before writing it when the disk has less room than the last one takes.

    The last checkpoint is the cheap and close estimate (same model, optimiser and states); with
    none yet there is nothing to compare with and the write itself is guarded.
    """
    found = checkpoint_dirs(output_dir)
    if not found:
        return
    needed = sum(f.stat().st_size for f in found[-1].rglob("*") if f.is_file())
    free = shutil.disk_usage(found[-1]).free
    if free < needed:
        raise SaveError(f"not enough free space to write checkpoint {str(target)!r}: the last one takes "
                        f"{needed / 2**20:.1f} MiB and its disk has {free / 2**20:.1f} MiB free; free space on that "
                        f"disk or point training.output_dir at one with room; {intact_note(output_dir)}")


def is_write_failure(err: BaseException) -> bool:
    """Whether ``err`` says a file could not be written (OS, torch's stream writer, safetensors)."""
    if isinstance(err, OSError) or is_kind(err, "SafetensorError"):
        return True
    return isinstance(err, RuntimeError) and any(text in str(err) for text in TORCH_WRITE_FAILURE)


@contextlib.contextmanager
def guard_write(target: Path, what: str, output_dir: Path, partial: Path | None = None) -> Iterator[None]:
    """Turn a failed write of ``what`` into ``target`` into one clear error; anything else passes through.

    A full disk becomes ``OSError(ENOSPC)`` naming ``target`` (``textdml.errors`` words it), any
    other write failure a :class:`SaveError` naming ``target``, the cause and the last complete
    checkpoint. ``partial`` (the folder being written) is removed, so its space comes back and
    resume never sees it.
    """
    try:
        yield
    except Exception as err:
        if not is_write_failure(err) or isinstance(err, SaveError):
            raise
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
        full = disk_full_error(err, target)
        if full is not None:
            raise full from err
        raise SaveError(f"writing the {what} {str(target)!r} failed ({first_line(err) or type(err).__name__}): the "
                        f"disk may be full or failing, check it and training.output_dir; {intact_note(output_dir)}"
                        ) from err


def disk_full_error(err: BaseException, path: Path) -> OSError | None:
    """An ``OSError(ENOSPC)`` naming ``path`` when ``err`` came from a full disk, else None."""
    full = is_disk_full(err)
    if not full and any(text in str(err) for text in ("write failed", *TORCH_WRITE_FAILURE)):
        try:
            full = shutil.disk_usage(nearest_existing(path)).free < LOW_DISK_BYTES
        except OSError:
            full = False
    if not full:
        return None
    return OSError(errno.ENOSPC, "No space left on device", str(path))


def rotate_checkpoints(output_dir: Path, total_limit: int | None, keep: Path | None) -> None:
    if not total_limit:
        return
    found = checkpoint_dirs(output_dir)
    for path in found[: max(0, len(found) - total_limit)]:
        if keep is None or path.resolve() != keep.resolve():
            shutil.rmtree(path)


def loads_as_plain_data(path: Path) -> bool:
    """Whether ``path`` unpickles with ``weights_only=True`` (plus Accelerate's numpy RNG types)."""
    try:
        accelerate_load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001  (any failure means: not a file to unpickle with full rights)
        return False
    return True


def check_pickles(path: Path) -> None:
    """Refuse a checkpoint holding a pickle that would need code to load (planted, or not textdml's)."""
    for pickled in sorted(path.glob("*.pkl")):
        if not loads_as_plain_data(pickled):
            raise CheckpointError(
                f"checkpoint {str(path)!r}: {pickled.name} does not load with weights_only=True, so unpickling it "
                "could run code; textdml never writes such a file. Resume from another checkpoint or delete this "
                "one (it may have been tampered with)"
            )


def load_checkpoint(accelerator: Accelerator, path: Path) -> TrainerState:
    state = TrainerState(**json.loads((path / STATE_FILE).read_text()))
    check_pickles(path)
    try:
        accelerator.load_state(str(path))
    except pickle.UnpicklingError as err:  # Accelerate reads the .bin states with weights_only=True
        raise CheckpointError(
            f"checkpoint {str(path)!r}: a state file does not load with weights_only=True, so unpickling it could "
            f"run code ({str(err).strip().splitlines()[0]}); resume from another checkpoint or delete this one"
        ) from err
    except (RuntimeError, KeyError, ValueError) as err:  # shapes, missing keys, optimiser groups
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not fit this run's model, loss or optimiser ({first}); resume it with "
            "the model and loss it was trained with, or start a new training.output_dir"
        ) from err
    return state
