"""training.overwrite_output_dir replaces a good run only once the new run has saved something
(issue 20): a new run that fails first, however early, leaves the old run as it was."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_checks import error_line, write_recipe
from textdml.cli import main
from textdml.training.run_folder import PREVIOUS

ROOT = Path(__file__).parents[2]


def folder_state(run: Path) -> dict[str, bytes]:
    """Every file of a run folder and its bytes."""
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def good_run(tiny_model_dir, tmp_path_factory) -> tuple[str, Path]:
    """A finished 2-step run with a checkpoint per step, evaluation and a best model: (recipe, run)."""
    root = tmp_path_factory.mktemp("good_run")
    recipe = write_recipe(root, tiny_model_dir, 16, "max_steps: 2, batch_size: 4, save_steps: 1, eval_steps: 2, "
                          "logging_steps: 1, learning_rate: 1.0e-3, show_progress_bar: false", evaluate=True)
    assert main(["train", "--config", recipe]) == 0
    return recipe, root / "run"


@pytest.fixture
def run(good_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(good_run[1], copy)
    return copy


def train_over(good_run, run: Path, *overrides: str) -> int:
    return main(["train", "--config", str(good_run[0]), f"training.output_dir={run}",
                 "training.overwrite_output_dir=true", *overrides])


@pytest.mark.parametrize("overrides, message", [
    (["loss.name=info_nce", "loss.temperatur=0.1"], "has no argument 'temperatur'"),
    (["train.path=MISSING"], "does not exist"),
    (["eval.data.columns.anchor=nope"], "mapped to column 'nope'"),
    (["train.columns.anchor=nope"], "mapped to column 'nope'"),
    # Checked before anything moves, although save_steps=1 comes before the first evaluation (step 2).
    (["training.metric_for_best_model=ndcg@11"], "'ndcg@11' is not among the evaluation metrics"),
    (["loss={target: tests.cli_checks.AlwaysNanLoss}", "training.preflight=false"], "the loss is nan at step 1"),
], ids=["loss_argument", "data_file", "eval_column", "train_column", "best_metric", "nan_at_step_1"])
# The last case fails mid-training, at its first step.
def test_a_failing_run_leaves_the_run_it_would_replace_intact(good_run, run, tmp_path, capsys, overrides, message):
    before = folder_state(run)
    overrides = [o.replace("MISSING", str(tmp_path / "missing.jsonl")) for o in overrides]
    assert train_over(good_run, run, "training.learning_rate=5e-4", *overrides) == 2
    assert message in error_line(capsys, "train")
    assert folder_state(run) == before
    assert not (run / PREVIOUS).exists()


def test_a_good_run_replaces_the_old_one_at_its_first_checkpoint(good_run, run, monkeypatch):
    import textdml.training.checkpoint as checkpoint
    import textdml.training.run_folder as run_folder

    old_weights = (run / "final" / "model.safetensors").read_bytes()
    seen = []  # what the folder held when the old run was deleted
    discard = run_folder.discard_previous_run

    def watched(output_dir):
        if (output_dir / PREVIOUS).exists():
            seen.append(sorted(p.name for p in (output_dir / "checkpoints").iterdir()))
        discard(output_dir)

    monkeypatch.setattr(checkpoint, "discard_previous_run", watched)  # after a checkpoint
    monkeypatch.setattr(run_folder, "discard_previous_run", watched)  # after the final model
    assert train_over(good_run, run, "training.learning_rate=5e-4", "training.max_steps=3") == 0
    assert seen == [["checkpoint-1"]]
    assert not (run / PREVIOUS).exists()
    assert (run / "final" / "model.safetensors").read_bytes() != old_weights
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-3"]
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 2, 3, 3]  # loss at 1, 2, 3; evaluation at 2 and at the end


KILLED_AT = """
import os, sys
import textdml.training.{module} as target
from textdml.cli import main

def killed(*args, **kwargs):
    os._exit(9)  # as kill -9: no cleanup of any kind
target.{function} = killed
sys.exit(main(sys.argv[1:]))
"""


def train_killed(good_run, run: Path, module: str, function: str) -> None:
    code = KILLED_AT.format(module=module, function=function)
    argv = ["train", "--config", str(good_run[0]), f"training.output_dir={run}", "training.overwrite_output_dir=true",
            "training.learning_rate=5e-4", "training.max_steps=3"]
    done = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 9, done.stderr[-2000:]


def test_a_kill_before_the_first_checkpoint_gives_the_old_run_back_at_the_next_start(good_run, run, capsys):
    before = folder_state(run)
    train_killed(good_run, run, "loop", "save_checkpoint")  # killed as it starts saving checkpoint-1
    assert (run / PREVIOUS / "final").is_dir() and not (run / "final").exists()
    # The next start, here one that fails, puts the old run back before anything else.
    assert train_over(good_run, run, "training.learning_rate=5e-4", "loss.name=info_nce", "loss.temperatur=0.1") == 2
    error_line(capsys, "train")
    assert folder_state(run) == before and not (run / PREVIOUS).exists()


def test_a_kill_after_the_first_checkpoint_keeps_the_new_run(good_run, run):
    old_weights = (run / "final" / "model.safetensors").read_bytes()
    # Killed between writing checkpoint-1 and deleting the old run.
    train_killed(good_run, run, "checkpoint", "discard_previous_run")
    assert (run / PREVIOUS).is_dir() and (run / "checkpoints" / "checkpoint-1").is_dir()
    assert main(["train", "--config", str(good_run[0]), f"training.output_dir={run}", "training.learning_rate=5e-4",
                 "training.max_steps=3", "training.resume_from_checkpoint=latest"]) == 0
    assert not (run / PREVIOUS).exists()
    assert (run / "final" / "model.safetensors").read_bytes() != old_weights
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 2, 3, 3]  # the new run's step 1, then its resumed steps
