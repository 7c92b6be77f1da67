"""Distillation recipes: validated as written, then two steps through the CLI with a tiny teacher and student."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from textdml.cli import main
from textdml.config import load_run_config
from textdml.training.teacher import resolve_packaged_model

RECIPES = sorted((Path(__file__).parents[2] / "recipes" / "distillation").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_is_valid_and_its_teacher_resolves_offline(recipe):
    config = load_run_config(recipe)
    teacher = config.loss.get("teacher") or config.loss.get("guide")
    assert teacher and Path(resolve_packaged_model(teacher)).is_dir()
    assert config.model.num_layers


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_two_step_cli_run(recipe, tiny_model_dir, tmp_path):
    overrides = [f"model.name_or_path={tiny_model_dir}", f"loss.teacher={tiny_model_dir}", "training.max_steps=2",
                 "training.batch_size=8", "training.save_steps=1", "training.eval_steps=2", "train.max_rows=200",
                 "eval.data.max_rows=60", f"training.output_dir={tmp_path / 'run'}", "training.show_progress_bar=false"]
    assert main(["train", "--config", str(recipe), *overrides]) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("eval_spearman_cosine" in record for record in records)
    assert (tmp_path / "run" / "final" / "modules.json").exists()
