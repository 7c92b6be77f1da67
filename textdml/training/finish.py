"""After the last step: the final evaluation, ``final/`` (atomic), the model cards, and the push.

Both are callbacks (``on_train_end``) that ``train`` and ``Trainer`` register around the
diagnostics report: ``FinishRun`` first, the report, then ``PushToHub``. They run under the loop's
signal handler: a stop request received while ``final/`` is written lets it finish, then skips
what comes after the model itself (the report and the push).
"""

from __future__ import annotations

import logging

import torch
from accelerate import Accelerator

from textdml.config import RunConfig, TrainingConfig
from textdml.console import own_bars_shown
from textdml.models.embedder import Embedder
from textdml.models.saving import is_saved_model, save_model
from textdml.training import run_folder
from textdml.training.build import create_model
from textdml.training.callbacks import Callback
from textdml.training.checkpoint import guard_write
from textdml.training.loop import FitRun

logger = logging.getLogger(__name__)

class FinishRun(Callback):
    """The final evaluation (unless the last step had one), ``final/``, and the cards of final/ and best/."""

    def on_train_end(self, run: FitRun) -> None:
        from textdml.training import run_info

        config, accelerator, state, t = run.config, run.accelerator, run.state, run.config.training
        unwrapped = run.unwrapped
        if run.parts.evaluator is not None and (not t.eval_steps or state.global_step % t.eval_steps):
            with own_bars_shown(t.show_progress_bar and accelerator.is_main_process):  # the training bar is closed
                run.evaluate()
        final_dir = run.output_dir / "final"
        run.final_model = gathered_embedder(accelerator, run.task, config) if run.sharded else unwrapped.embedder
        summary = run_info.summarize_run(config, run.parts.data, run.parts.evaluator, unwrapped, accelerator,
                                         run.step_seconds, state.global_step)
        if not accelerator.is_main_process:
            return
        from textdml.hub.model_card import write_model_card

        with guard_write(final_dir, "final model", run.output_dir), \
                run_folder.atomic_folder(final_dir) as folder:  # a kill mid-save never leaves a partial final/
            save_model(run.final_model, folder, keep_adapter=t.save_adapter)
            write_model_card(folder, config, unwrapped.loss, run.log.records, summary=summary)
        if is_saved_model(run.best_dir):
            write_model_card(run.best_dir, config, unwrapped.loss, run.log.records, summary=summary)
        run.log.saved(final_dir, "final", state)
        run_folder.discard_previous_run(run.output_dir)  # this run has its model: a run it replaces goes now


class PushToHub(Callback):
    """``final/`` to ``training.push_to_hub`` (main process; skipped after a stop request)."""

    def __init__(self, token: str | None):
        self.token = token

    def on_train_end(self, run: FitRun) -> None:
        repo_id = run.config.training.push_to_hub
        if not repo_id or not run.accelerator.is_main_process or run.stop.signum is not None:
            return
        from textdml.hub.push import push_to_hub

        pushed = push_to_hub(run.output_dir / "final", repo_id, private=run.config.training.hub_private,
                             token=self.token)
        logger.info("pushed the final model to %s", pushed.url)


def check_push_target(t: TrainingConfig) -> str | None:
    """With ``training.push_to_hub``: the repo id checked and the token found (before any training)."""
    if not t.push_to_hub:
        return None
    from textdml.hub.push import check_repo_id, find_token

    check_repo_id(t.push_to_hub)
    return find_token(None)


def gathered_embedder(accelerator: Accelerator, task: torch.nn.Module, config: RunConfig) -> Embedder | None:
    """The full weights of a sharded run, gathered (every process must call this) into a fresh
    embedder on the main process, ready for ``save_pretrained``."""
    state = accelerator.get_state_dict(task)
    if not accelerator.is_main_process:
        return None
    embedder = create_model(config.model)
    prefix = "embedder."
    embedder.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    return embedder

