"""Two training steps through the trainer for each loss added from pytorch-metric-learning's catalogue."""

from __future__ import annotations

import json
import math

import pytest
from datasets import Dataset

from textdml.config import load_run_config
from textdml.training.loop import train

LABELLED = ["fast_ap", "smooth_ap", "histogram", "instance", "intra_pair_variance", "manifold", "p2s_grad"]
PAIRS = ["fast_ap", "smooth_ap", "histogram", "instance", "intra_pair_variance"]


def run(model_dir, output_dir, dataset, *overrides):
    config = load_run_config(None, ["train.path=in-memory", f"model.name_or_path={model_dir}",
                                    f"training.output_dir={output_dir}", "training.batch_size=8",
                                    "training.learning_rate=1e-3", "training.show_progress_bar=false",
                                    "training.logging_steps=1", "training.max_steps=2", *overrides])
    return train(config, train_dataset=dataset)


def assert_two_finite_steps(result, output_dir):
    records = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [record["loss"] for record in records if "loss" in record]
    assert result.global_step == 2 and len(losses) == 2 and all(math.isfinite(v) for v in losses)


@pytest.mark.slow
@pytest.mark.parametrize("loss", LABELLED)
def test_two_steps_on_labelled_texts(loss, tiny_model_dir, tmp_path):
    labelled = Dataset.from_dict({"anchor": [f"definition {i} of class {i % 4}" for i in range(32)],
                                  "label": [f"class-{i % 4}" for i in range(32)]})
    result = run(tiny_model_dir, tmp_path, labelled, "training.sampler=m_per_class", "training.m_per_class=2",
                 f"loss.name={loss}")
    assert_two_finite_steps(result, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("loss", PAIRS)
def test_two_steps_on_pairs(loss, tiny_model_dir, tmp_path):
    pairs = Dataset.from_dict({"anchor": [f"question number {i}" for i in range(24)],
                               "positive": [f"the answer is {i}" for i in range(24)]})
    result = run(tiny_model_dir, tmp_path, pairs, f"loss.name={loss}")
    assert_two_finite_steps(result, tmp_path)
