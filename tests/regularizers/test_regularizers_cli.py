"""Regularizers from the command line: a two-step training run, and bad ones as one error line.

Both load WordNet and a tiny model through the CLI (tens of seconds): marked slow. The same errors
are checked fast in test_regularizers.py (config and build level).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from textdml.cli import main

RECIPE = Path(__file__).parents[2] / "recipes" / "labelled" / "minilm_arc_face_wordnet.yaml"


@pytest.mark.slow
def test_two_step_run_with_a_weight_regularizer(tiny_model_dir, tmp_path):
    overrides = [f"model.name_or_path={tiny_model_dir}", "training.max_steps=2", "training.batch_size=8",
                 "training.m_per_class=4", "training.save_steps=2", "training.eval_steps=2", "train.max_rows=200",
                 "eval.data.max_rows=40", f"training.output_dir={tmp_path / 'run'}", "training.show_progress_bar=false",
                 "loss.weight_regularizer={name: regular_face, weight: 0.1}",
                 "loss.embedding_regularizer={name: lp, weight: 0.01}"]
    assert main(["train", "--config", str(RECIPE), *overrides]) == 0
    card = (tmp_path / "run" / "final" / "README.md").read_text()
    assert "zhao2019regularface" in card and "deng2019arcface" in card


@pytest.mark.slow
def test_bad_regularizers_are_one_cli_error_line(tiny_model_dir, tmp_path, capsys):
    recipe = RECIPE.parents[1] / "retrieval" / "minilm_info_nce_wordnet.yaml"
    common = ["train", "--config", str(recipe), f"model.name_or_path={tiny_model_dir}", "train.max_rows=40",
              "eval.data.max_rows=20", "training.max_steps=1", f"training.output_dir={tmp_path / 'run'}",
              "training.show_progress_bar=false"]
    assert main([*common, "loss.weight_regularizer=regularface"]) == 2
    assert "did you mean 'regular_face'" in capsys.readouterr().err
    assert main([*common, "loss.weight_regularizer=regular_face"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("textdml train: error:")]
    assert len(errors) == 1 and "InfoNCELoss has no class weights" in errors[0]
    assert "embedding_regularizer with one of: center_invariant, flops, lp, regular_face, zero_mean" in errors[0]
