"""Numeric settings outside their range are errors naming the key, the value and the range (issue 16)."""

from __future__ import annotations

import pytest

from textdml.config import ConfigError, load_run_config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.max_steps=0", r"training.max_steps must be >= 1, got 0 \(leave it unset"),
        ("training.max_steps=-3", "training.max_steps must be >= 1, got -3"),
        ("training.warmup_ratio=2", "training.warmup_ratio must be >= 0 and < 1, got 2.0"),
        ("training.warmup_ratio=-0.1", "training.warmup_ratio must be >= 0 and < 1"),
        ("training.weight_decay=-1", "training.weight_decay must be >= 0"),
        ("training.max_grad_norm=0", "training.max_grad_norm must be > 0, got 0.0 \\(null turns clipping off\\)"),
        ("training.save_steps=0", "training.save_steps must be >= 1"),
        ("training.eval_steps=-5", "training.eval_steps must be >= 1"),
        ("training.save_total_limit=0", "training.save_total_limit must be >= 1"),
        ("training.seed=-1", "training.seed must be >= 0"),
        ("training.learning_rate=.nan", "training.learning_rate must be > 0, got nan"),
        ("training.num_workers=-2", "training.num_workers must be >= 0"),
        ("model.max_seq_length=0", "model.max_seq_length must be >= 1"),
        ("eval.batch_size=0", "eval.batch_size must be >= 1"),
        ("index.batch_size=0", "index.batch_size must be >= 1"),
        ("train.max_rows=0", "train.max_rows must be >= 1"),
    ],
)
def test_out_of_range_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_run_config(None, ["train.path=x", override])


def test_edges_of_the_ranges_are_accepted():
    config = load_run_config(None, ["train.path=x", "training.max_steps=1", "training.warmup_ratio=0",
                                    "training.weight_decay=0", "training.max_grad_norm=null", "training.seed=0"])
    assert config.training.max_steps == 1 and config.training.max_grad_norm is None
