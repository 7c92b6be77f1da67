"""Mining as a run step: `textdml mine`, and `train` with a mine section (mined once, reused on resume)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import Dataset

from textdml.cli import main
from textdml.config import ConfigError, load_run_config

RECIPE = Path(__file__).parents[2] / "recipes" / "retrieval" / "minilm_hard_negatives_wordnet.yaml"


def overrides(tiny_model_dir, tmp_path) -> list[str]:
    return [f"model.name_or_path={tiny_model_dir}", "train.max_rows=120", "training.batch_size=8",
            "training.max_steps=2", "training.save_steps=1", "eval.data.max_rows=20",
            f"training.output_dir={tmp_path / 'run'}", "training.show_progress_bar=false"]


def test_mine_verb_writes_the_table_and_its_settings(tiny_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "mined"
    assert main(["mine", "--config", str(RECIPE), "--output", str(out), *overrides(tiny_model_dir, tmp_path)]) == 0
    assert "mined.parquet" in capsys.readouterr().out
    table = Dataset.from_parquet(str(out / "mined.parquet"))
    assert {"anchor", "positive", "negative_1", "scores"} <= set(table.column_names)
    settings = json.loads((out / "mining_settings.json").read_text())
    assert settings["settings"]["range_min"] == 2 and settings["settings"]["absolute_margin"] == 0.0
    assert all(row["negative_1"] != row["positive"] for row in table)


def test_train_mines_first_and_a_resumed_run_reuses_the_table(tiny_model_dir, tmp_path) -> None:
    args = ["train", "--config", str(RECIPE), *overrides(tiny_model_dir, tmp_path)]
    assert main(args) == 0
    mined = tmp_path / "run" / "mined"
    shards = sorted(mined.glob("shards/shard-*.parquet"))
    assert shards and (mined / "mined.parquet").exists()
    stamp = [p.stat().st_mtime_ns for p in shards]
    assert main([*args, "training.resume_from_checkpoint=latest", "training.max_steps=3"]) == 0
    assert [p.stat().st_mtime_ns for p in shards] == stamp  # the same weights and settings: nothing re-mined


def test_mine_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="leaves fewer candidates"):
        load_run_config(RECIPE, ["mine.range_min=5", "mine.range_max=5"])
    with pytest.raises(ConfigError, match="unknown key config.mine.top_k"):
        load_run_config(RECIPE, ["mine.top_k=3"])
