"""Each recipe family runs two steps through the CLI on a tiny model, then eval / index / search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from textdml.cli import main

RECIPES = Path(__file__).parents[2] / "recipes"


def tiny_overrides(tiny_model_dir, tmp_path) -> list[str]:
    return [f"model.name_or_path={tiny_model_dir}", "training.max_steps=2", "training.batch_size=8",
            "training.m_per_class=4", "training.save_steps=1", "training.eval_steps=2", "train.max_rows=400",
            "eval.data.max_rows=40", f"training.output_dir={tmp_path / 'run'}", f"index.path={tmp_path / 'qdrant'}",
            "training.show_progress_bar=false"]


# Distillation recipes name a teacher of the real model's size: tests/recipes/test_distillation_recipes.py.
TRAINING_RECIPES = sorted(p for p in RECIPES.rglob("*.yaml")
                          if p.parent.name not in ("accelerate", "image_text", "distillation"))


@pytest.mark.parametrize("recipe", TRAINING_RECIPES, ids=lambda p: p.stem)
def test_two_step_cli_run(recipe, tiny_model_dir, tmp_path, capsys):
    assert main(["train", "--config", str(recipe), *tiny_overrides(tiny_model_dir, tmp_path)]) == 0
    final = tmp_path / "run" / "final"
    assert (final / "modules.json").exists() and (final / "README.md").exists()
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["checkpoint-1", "checkpoint-2"]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(key.startswith("eval_") for record in records for key in record)


def test_eval_index_search_through_the_cli(tiny_model_dir, tmp_path, capsys):
    recipe = str(RECIPES / "retrieval" / "minilm_info_nce_wordnet.yaml")
    overrides = tiny_overrides(tiny_model_dir, tmp_path)
    assert main(["train", "--config", recipe, *overrides]) == 0
    model = str(tmp_path / "run" / "final")
    assert main(["eval", "--config", recipe, "--model", model, *overrides]) == 0
    assert "ndcg@10" in capsys.readouterr().out
    assert main(["index", "--config", recipe, "--model", model, *overrides]) == 0
    assert "indexed" in capsys.readouterr().out
    # Twice: a second version of the same documents goes live; in place, nothing is written again.
    assert main(["index", "--config", recipe, "--model", model, *overrides]) == 0
    assert "now points at it" in capsys.readouterr().out
    in_place = [*overrides, "index.versioned=false", "index.collection=plain"]
    assert main(["index", "--config", recipe, "--model", model, *in_place]) == 0
    capsys.readouterr()
    assert main(["index", "--config", recipe, "--model", model, *in_place]) == 0
    assert "(0 encoded" in capsys.readouterr().out
    assert main(["search", "--config", recipe, "--model", model, "--query", "a small cat", "--top-k", "2",
                 *overrides]) == 0
    assert "a small cat" in capsys.readouterr().out


def test_cli_errors_are_one_clear_line(tiny_model_dir, tmp_path, capsys):
    recipe = str(RECIPES / "retrieval" / "minilm_info_nce_wordnet.yaml")
    assert main(["train", "--config", recipe, "loss.name=infonce"]) == 2
    assert "did you mean 'info_nce'" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "--config", recipe, f"model.name_or_path={tmp_path / 'no-model'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"question": "a", "answer": "b"}\n')
    assert main(["train", "--config", recipe, f"train.path={bad}", f"model.name_or_path={tiny_model_dir}"]) == 2
    assert "no column for role 'anchor'" in capsys.readouterr().err
