"""The CLI's console: one line per warning (textdml's as ``textdml: warning: ...``), other libraries quiet
unless ``--verbose`` / ``TEXTDML_VERBOSE`` (issue 20)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import datasets
from datasets import Dataset
from transformers.utils import logging as transformers_logging

import textdml.console
from textdml.console import cli_console


def test_textdml_warnings_are_one_line_without_the_source_line(capsys):
    with cli_console():
        warnings.warn_explicit("prompts are set for a model\nsaved without them", UserWarning,
                               textdml.console.__file__, 1, module="textdml.models.embedder")
    err = capsys.readouterr().err
    assert err == "textdml: warning: prompts are set for a model saved without them\n"


def test_other_libraries_future_warnings_and_bars_are_off_unless_verbose(capsys, monkeypatch):
    monkeypatch.delenv("TEXTDML_VERBOSE", raising=False)
    with cli_console():
        warnings.warn_explicit("gradient_checkpointing_kwargs is not supported", FutureWarning, "peft/utils/other.py",
                               250, module="peft.utils.other")
        assert not transformers_logging.is_progress_bar_enabled() and not datasets.is_progress_bar_enabled()
    assert capsys.readouterr().err == ""
    assert transformers_logging.is_progress_bar_enabled() and datasets.is_progress_bar_enabled()  # restored
    monkeypatch.setenv("TEXTDML_VERBOSE", "1")
    with cli_console():
        warnings.warn_explicit("gradient_checkpointing_kwargs is not supported", FutureWarning,
                               "/x/site-packages/peft/utils/other.py", 250, module="peft.utils.other")
        assert transformers_logging.is_progress_bar_enabled()
    assert capsys.readouterr().err == "warning (peft): gradient_checkpointing_kwargs is not supported\n"


def test_train_through_the_cli_shows_no_other_library_bars(tiny_model_dir, tmp_path):
    data = tmp_path / "pairs.jsonl"
    Dataset.from_dict({"anchor": [f"question {i}" for i in range(16)],
                       "positive": [f"answer {i}" for i in range(16)]}).to_json(str(data))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({"train": {"path": str(data)}, "model": {"name_or_path": str(tiny_model_dir)}}))
    env = {k: v for k, v in os.environ.items() if k != "TEXTDML_VERBOSE"} | {"HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "textdml", "train", "--config", str(recipe),
                           f"training.output_dir={tmp_path / 'run'}", "training.batch_size=8", "training.max_steps=2",
                           "training.report=false"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for noise in ("Loading weights", "Generating train split", "Creating parquet", "Writing", "FutureWarning",
                  "warnings.warn("):
        assert noise not in done.stderr, (noise, done.stderr[-3000:])
    assert "Training" in done.stderr  # textdml's own bar stays
