"""Streaming (``train.streaming=true``): several steps across epochs, resume, a real kill, two processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file

from textdml.cli import main
from textdml.config import load_run_config
from textdml.training.loop import train

ROOT = Path(__file__).parents[2]
RECIPE = str(ROOT / "recipes" / "retrieval" / "minilm_info_nce_wordnet.yaml")


def write_pairs(path: Path, rows: int = 24) -> Path:
    Dataset.from_dict({"anchor": [f"question {i} about topic {i % 7}" for i in range(rows)],
                       "positive": [f"answer {i}: " + "words " * (i % 9) for i in range(rows)]}).to_json(str(path))
    return path


def overrides(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [f"train.path={data}", "train.streaming=true", f"model.name_or_path={model}", f"training.output_dir={out}",
            "training.batch_size=8", "training.learning_rate=1e-3", "training.show_progress_bar=false",
            "training.logging_steps=1", "eval.data=null", *extra]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "final" / "model.safetensors"))


def test_streaming_trains_several_steps_across_epochs(tiny_model_dir, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl")  # 3 full batches per pass: 5 steps cross an epoch
    config = load_run_config(RECIPE, overrides(tiny_model_dir, data, tmp_path / "run", "training.max_steps=5"))
    result = train(config)
    assert result.global_step == 5
    assert [r["epoch"] for r in result.metrics if "loss" in r] == [0, 0, 0, 1, 1]
    assert (result.final_model / "modules.json").exists()


def test_streaming_through_the_cli(tiny_model_dir, tmp_path, capsys):
    data = write_pairs(tmp_path / "pairs.jsonl")
    assert main(["train", "--config", RECIPE, *overrides(tiny_model_dir, data, tmp_path / "run",
                                                          "training.max_steps=2")]) == 0
    assert '"steps": 2' in capsys.readouterr().out


def test_streaming_resume_ends_with_the_same_weights(tiny_model_dir, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl")
    steps = ("training.max_steps=5", "training.save_steps=4", "training.save_total_limit=3")
    train(load_run_config(RECIPE, overrides(tiny_model_dir, data, tmp_path / "unbroken", *steps)))
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "unbroken" / "checkpoints" / "checkpoint-4", resumed / "checkpoints" / "checkpoint-4")
    result = train(load_run_config(RECIPE, overrides(tiny_model_dir, data, resumed, *steps,
                                                     "training.resume_from_checkpoint=latest")))
    assert result.global_step == 5
    expected, actual = weights(tmp_path / "unbroken"), weights(resumed)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-6, msg=key)


def test_streaming_with_no_full_batch_is_an_error(tiny_model_dir, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", rows=5)
    with pytest.raises(ValueError, match="no full batch of 8 rows"):
        train(load_run_config(RECIPE, overrides(tiny_model_dir, data, tmp_path / "run", "training.max_steps=2")))


KILL_AFTER_CHECKPOINT = textwrap.dedent("""
    import os, signal, sys
    import textdml.training.loop as loop
    from textdml.cli import main

    save = loop.save_checkpoint

    def save_then_die(accelerator, output_dir, state, *args, **kwargs):
        path = save(accelerator, output_dir, state, *args, **kwargs)
        if state.global_step == int(os.environ["KILL_AT_STEP"]):
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no final save: a real kill
        return path

    loop.save_checkpoint = save_then_die
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow
def test_streaming_resumes_after_a_kill(tiny_model_dir, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl")
    steps = ("training.max_steps=5", "training.save_steps=2", "training.save_total_limit=5")
    train(load_run_config(RECIPE, overrides(tiny_model_dir, data, tmp_path / "unbroken", *steps)))
    killed = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KILL_AT_STEP": "4"}
    done = subprocess.run([sys.executable, "-c", KILL_AFTER_CHECKPOINT, "train", "--config", RECIPE,
                           *overrides(tiny_model_dir, data, killed, *steps)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    assert not (killed / "final").exists()
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-4"]
    result = train(load_run_config(RECIPE, overrides(tiny_model_dir, data, killed, *steps,
                                                     "training.resume_from_checkpoint=latest")))
    assert result.global_step == 5
    expected, actual = weights(tmp_path / "unbroken"), weights(killed)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-6, msg=key)


@pytest.mark.slow
def test_streaming_two_processes_equal_one_process_on_the_global_batch(tiny_model_dir, tmp_path):
    from tests.integration.test_ddp_cpu import no_dropout_model

    model = no_dropout_model(tiny_model_dir, tmp_path / "model")
    data = write_pairs(tmp_path / "pairs.jsonl", rows=64)
    common = ("training.max_steps=3", "training.bucket_rows=null", "training.save_steps=3")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "textdml", "train",
               "--config", RECIPE, *overrides(model, data, tmp_path / "ddp", *common)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # Each process reads its own 8 rows of every 16: one process on batches of 16 sees the same rows.
    single = overrides(model, data, tmp_path / "single", *common) + ["training.batch_size=16"]
    assert main(["train", "--config", RECIPE, *single]) == 0
    ddp, one = weights(tmp_path / "ddp"), weights(tmp_path / "single")
    base = load_file(str(model / "model.safetensors"))
    assert max((one[k] - base[k]).abs().max().item() for k in one) > 1e-4
    for key in one:
        torch.testing.assert_close(ddp[key], one[key], atol=2e-5, rtol=1e-4, msg=key)
    assert (tmp_path / "ddp" / "checkpoints" / "checkpoint-3" / "trainer_state.json").exists()
