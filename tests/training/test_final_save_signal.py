"""Ctrl-C while final/ is written: final/ finishes whole, then the run stops with the signal acknowledged.

The signal is sent to a real ``textdml train`` process whose final save is made slow, both with
SIGINT as Python sets it up and with SIGINT inherited as ignored (a background job of a script,
which is how the lost signal of issue 20 was sent: restoring that handler for the final save
ignored it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from datasets import Dataset
from safetensors.torch import load_file

DRIVER = textwrap.dedent("""
    import sys, time

    import textdml.training.finish as finish
    from textdml.cli import main

    save = finish.save_model

    def slow_final_save(model, folder, *args, **kwargs):
        if "final" in str(folder):
            print("SAVING-FINAL", flush=True)
            time.sleep(float(sys.argv[1]))  # a signal's handler runs, then the sleep goes on
        return save(model, folder, *args, **kwargs)

    finish.save_model = slow_final_save  # the final save's own reference
    sys.exit(main(sys.argv[2:]))
""")


def start_run(tiny_model_dir, tmp_path, ignore_sigint: bool) -> tuple[subprocess.Popen, object]:
    data = tmp_path / "pairs.jsonl"
    Dataset.from_dict({"anchor": [f"question {i}" for i in range(16)],
                       "positive": [f"answer {i}" for i in range(16)]}).to_json(str(data))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({"train": {"path": str(data)}, "model": {"name_or_path": str(tiny_model_dir)}}))
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    run = tmp_path / "run"
    command = [sys.executable, str(driver), "3", "train", "--config", str(recipe), f"training.output_dir={run}",
               "training.batch_size=8", "training.max_steps=2", "training.show_progress_bar=false",
               "training.report=false"]

    def ignore() -> None:  # what `textdml train ... &` in a non-interactive shell gets
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=ignore if ignore_sigint else None, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    for line in process.stdout:  # the run reaches the final save
        if "SAVING-FINAL" in line:
            break
    else:
        pytest.fail(f"the run never reached the final save: {process.communicate()[1][-3000:]}")
    return process, run


@pytest.mark.parametrize("ignore_sigint", [False, True], ids=["sigint-default", "sigint-inherited-ignored"])
def test_sigint_during_the_final_save_finishes_final_then_stops(tiny_model_dir, tmp_path, ignore_sigint):
    process, run = start_run(tiny_model_dir, tmp_path, ignore_sigint)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT, err[-3000:]  # acknowledged, not lost
    assert "SIGINT received while saving the final model" in err and "is complete" in err, err[-3000:]
    assert load_file(str(run / "final" / "model.safetensors"))  # whole and loadable
    assert (run / "final" / "README.md").exists()
    assert not list(run.glob(".partial-*"))


@pytest.mark.parametrize("ignore_sigint", [False, True], ids=["sigint-default", "sigint-inherited-ignored"])
def test_a_second_sigint_during_the_final_save_stops_at_once(tiny_model_dir, tmp_path, ignore_sigint):
    process, run = start_run(tiny_model_dir, tmp_path, ignore_sigint)
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)  # not a timing assertion: the two signals only need to arrive one after the other
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT, err[-3000:]
    assert not (run / "final").exists() and not list(run.glob(".partial-*"))  # no half-written model
