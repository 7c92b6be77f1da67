"""Inputs shared by the training-loop tests: a small in-memory pairs table and its run config."""

from __future__ import annotations

from datasets import Dataset

from textdml.config import load_run_config


def pairs_dataset(rows: int = 24) -> Dataset:
    return Dataset.from_dict({"anchor": [f"question number {i}" for i in range(rows)],
                              "positive": [f"the answer is {i} {'long ' * (i % 5)}" for i in range(rows)]})


def make_config(model_dir, output_dir, *overrides):
    return load_run_config(None, ["train.path=in-memory", f"model.name_or_path={model_dir}",
                                  f"training.output_dir={output_dir}", "training.batch_size=8",
                                  "training.learning_rate=1e-3", "training.show_progress_bar=false",
                                  "training.logging_steps=1", *overrides])
