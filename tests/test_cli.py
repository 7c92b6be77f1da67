"""CLI parsing and output: overrides anywhere among the options, one metric table per `textdml eval`."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from textdml.cli import main, parse_arguments

RECIPE = str(Path(__file__).parents[1] / "recipes" / "retrieval" / "minilm_info_nce_wordnet.yaml")


@pytest.mark.parametrize("argv", [
    ["search", "--config", "R", "--model", "M", "--query", "cat", "--top-k", "2", "index.collection=x"],
    ["search", "index.collection=x", "--config", "R", "--model", "M", "--query", "cat", "--top-k", "2"],
    ["search", "--config", "R", "index.collection=x", "--model", "M", "training.seed=3", "--query", "cat"],
])
def test_overrides_stand_anywhere(argv):
    args = parse_arguments(argv)
    assert args.verb == "search" and args.config == "R" and args.model == "M" and args.query == ["cat"]
    assert "index.collection=x" in args.overrides


def test_train_overrides_before_the_config_option():
    args = parse_arguments(["train", "training.max_steps=2", "--config", "R", "training.seed=1"])
    assert args.overrides == ["training.max_steps=2", "training.seed=1"] and args.config == "R"


def test_unknown_verb_is_still_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        parse_arguments(["fly"])
    assert "invalid choice" in capsys.readouterr().err


def test_eval_prints_the_metric_table_once(tiny_model_dir, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)  # as the CLI's own logging.basicConfig(level=INFO) would
    overrides = ["eval.data.max_rows=30", f"training.output_dir={tmp_path}"]
    assert main(["eval", "--config", RECIPE, "--model", str(tiny_model_dir), *overrides]) == 0
    captured = capsys.readouterr()
    everything = captured.out + captured.err + caplog.text
    assert everything.count("ndcg@10") == 1, everything
    assert "metric" in captured.out
