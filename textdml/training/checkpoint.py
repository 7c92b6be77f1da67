"""Checkpoints: Accelerate state (model, optimiser, scheduler, RNG) + the position in the data.

A checkpoint is written into a temporary folder and renamed into place, so a kill during saving
never leaves a half-written checkpoint that resume would pick up.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from accelerate import Accelerator

STATE_FILE = "trainer_state.json"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class TrainerState:
    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0  # batches of the current epoch already consumed
    best_metric: float | None = None
    best_step: int | None = None
    mined_at_step: int = 0  # training.remine_every: the step whose mined table is in use


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
                    keep: Path | None = None) -> Path:
    root = output_dir / "checkpoints"
    final = root / f"checkpoint-{state.global_step}"
    partial = root / f".partial-checkpoint-{state.global_step}"
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    if accelerator.is_main_process:
        (partial / STATE_FILE).write_text(json.dumps(asdict(state), indent=2))
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)
        rotate_checkpoints(output_dir, total_limit, keep)
    accelerator.wait_for_everyone()
    return final


def rotate_checkpoints(output_dir: Path, total_limit: int | None, keep: Path | None) -> None:
    if not total_limit:
        return
    found = checkpoint_dirs(output_dir)
    for path in found[: max(0, len(found) - total_limit)]:
        if keep is None or path.resolve() != keep.resolve():
            shutil.rmtree(path)


def load_checkpoint(accelerator: Accelerator, path: Path) -> TrainerState:
    accelerator.load_state(str(path))
    return TrainerState(**json.loads((path / STATE_FILE).read_text()))
