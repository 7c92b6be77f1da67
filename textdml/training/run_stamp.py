"""What identifies a run in its folder (``RunStamp``), the folder's check, and where a run starts
(fresh, or from the checkpoint ``training.resume_from_checkpoint`` names)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from textdml.config import RunConfig, TrainingConfig, to_dict
from textdml.redaction import redact
from textdml.training import run_folder
from textdml.training.checkpoint import TrainerState, checkpoint_dirs, load_checkpoint, resolve_checkpoint

logger = logging.getLogger(__name__)


@dataclass
class RunStamp:
    """What identifies a run in its folder: the redacted config, its identity and fingerprint."""

    config_dict: dict[str, Any]
    identity: dict[str, Any]
    fingerprint: str

    @classmethod
    def of(cls, config: RunConfig) -> RunStamp:
        config_dict = redact(to_dict(config))
        identity = run_folder.run_identity(config_dict)
        return cls(config_dict, identity, run_folder.config_fingerprint(identity))


def stamp_run_folder(config: RunConfig, accelerator: Accelerator) -> RunStamp:
    """Check that ``training.output_dir`` holds this run only (see ``run_folder``) and stamp it."""
    t = config.training
    output_dir = Path(t.output_dir)
    stamp = RunStamp.of(config)
    if accelerator.is_main_process:  # a run killed while replacing another one: keep it, or the other
        run_folder.recover_previous_run(output_dir, saved=bool(checkpoint_dirs(output_dir)) or
                                        (output_dir / "final").is_dir())
    accelerator.wait_for_everyone()
    run_folder.prepare_run_folder(output_dir, stamp.fingerprint, stamp.identity, resume=t.resume_from_checkpoint,
                                  overwrite=t.overwrite_output_dir, force_resume=t.force_resume,
                                  checkpoints=checkpoint_dirs(output_dir), is_main=accelerator.is_main_process)
    accelerator.wait_for_everyone()
    return stamp


def resume(accelerator: Accelerator, stamp: RunStamp, t: TrainingConfig) -> tuple[TrainerState, Path | None]:
    """The state of the checkpoint named by ``training.resume_from_checkpoint`` (a fresh one without)."""
    state = TrainerState()
    checkpoint = resolve_checkpoint(Path(t.output_dir), t.resume_from_checkpoint)
    if checkpoint is not None:
        run_folder.check_checkpoint_run(checkpoint, stamp.fingerprint, stamp.identity, t.force_resume)
        state = load_checkpoint(accelerator, checkpoint)
        logger.info("resumed from %s at step %d", checkpoint, state.global_step)
    state.config_sha256 = stamp.fingerprint
    return state, checkpoint
