"""A tiny trained run shared by the hub tests (trained once per session, copied per test)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.training.loop_inputs import pairs_dataset
from textdml.config import load_run_config

DUMMY_TOKEN = "hf_textdmlDummyToken0123456789abcdefXYZ"


def write_pairs(path: Path, rows: int = 16) -> Path:
    path.write_text("".join(json.dumps({"anchor": f"question number {i}", "positive": f"the answer is {i}"}) + "\n"
                            for i in range(rows)))
    return path


def run_config(model_dir, output_dir, eval_file, *overrides):
    return load_run_config(None, ["train.path=in-memory", f"model.name_or_path={model_dir}",
                                  f"training.output_dir={output_dir}", "training.batch_size=8",
                                  "training.learning_rate=1e-3", "training.show_progress_bar=false",
                                  "training.logging_steps=1", "training.max_steps=3", "training.eval_steps=2",
                                  f"eval.data.path={eval_file}", *overrides])


def train_run(model_dir, root: Path, *overrides) -> Path:
    from textdml.evaluation.build import build_evaluator
    from textdml.training.loop import train

    root.mkdir(parents=True, exist_ok=True)
    config = run_config(model_dir, root / "run", write_pairs(root / "eval.jsonl"), *overrides)
    train(config, evaluator=build_evaluator(config.eval), train_dataset=pairs_dataset())
    return root / "run"


@pytest.fixture(scope="session")
def trained_run(tiny_model_dir, tmp_path_factory) -> Path:
    """``<run>/final`` of a 3-step run of the tiny model, with evaluation, a miner and a checkpoint."""
    return train_run(tiny_model_dir, tmp_path_factory.mktemp("trained"), "training.save_steps=2",
                     "loss={name: triplet, margin: 0.2}", "miner={name: batch_hard}")


@pytest.fixture
def run_dir(trained_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy
