"""Two CPU processes (torchrun, gloo) train exactly like one process on the global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from datasets import Dataset
from safetensors.torch import load_file

from textdml.cli import main

ROOT = Path(__file__).parents[2]


def write_data(path: Path) -> None:
    rows = 64
    Dataset.from_dict({"anchor": [f"question {i} about topic {i % 7}" for i in range(rows)],
                       "positive": [f"answer {i}: " + "words " * (i % 9) for i in range(rows)]}).to_json(str(path))


def no_dropout_model(tiny_model_dir: Path, out: Path) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    config = BertConfig.from_pretrained(tiny_model_dir)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    model = BertModel.from_pretrained(tiny_model_dir, config=config)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


def overrides(model: Path, data: Path, out: Path, batch_size: int) -> list[str]:
    return [f"train.path={data}", f"model.name_or_path={model}", f"training.output_dir={out}",
            f"training.batch_size={batch_size}", "training.max_steps=3", "training.learning_rate=1e-3",
            "training.show_progress_bar=false", "training.bucket_rows=null", "training.save_steps=3"]


def test_two_processes_equal_one_process_on_the_global_batch(tiny_model_dir, tmp_path):
    model = no_dropout_model(tiny_model_dir, tmp_path / "model")
    data = tmp_path / "pairs.jsonl"
    write_data(data)
    recipe = str(ROOT / "recipes" / "retrieval" / "minilm_info_nce_wordnet.yaml")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "textdml", "train",
               "--config", recipe, "eval.data=null", *overrides(model, data, tmp_path / "ddp", 8)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(["train", "--config", recipe, "eval.data=null", *overrides(model, data, tmp_path / "single", 16)]) == 0

    ddp, single = (load_file(str(tmp_path / run / "final" / "model.safetensors")) for run in ("ddp", "single"))
    moved = max((single[k] - load_file(str(model / "model.safetensors"))[k]).abs().max().item() for k in single)
    assert moved > 1e-4  # training changed the weights, so equality below means something
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], atol=2e-5, rtol=1e-4, msg=key)
    assert (tmp_path / "ddp" / "checkpoints" / "checkpoint-3" / "trainer_state.json").exists()


def test_two_processes_remine_through_one_collection(tiny_model_dir, tmp_path):
    # Only the main process opens the Qdrant Edge shard (one process at a time may); the other
    # waits at each mining and reads the table the main process wrote.
    from textdml.index import list_versions, open_client

    recipe = str(ROOT / "recipes" / "retrieval" / "minilm_hard_negatives_wordnet.yaml")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "textdml", "train",
               "--config", recipe, "eval.data=null", f"model.name_or_path={tiny_model_dir}", "train.max_rows=64",
               "training.batch_size=8", "training.max_steps=3", "training.remine_every=2", "mine.range_max=10",
               "mine.collection=wordnet-train", f"index.path={tmp_path / 'qdrant'}", "training.show_progress_bar=false",
               f"training.output_dir={tmp_path / 'ddp'}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with open_client(path=tmp_path / "qdrant") as engine:
        versions = list_versions(engine, "wordnet-train")
    assert len(versions) == 2 and versions[-1].live  # the starting weights', then step 2's
    used = [json.loads((tmp_path / "ddp" / "mined" / folder / "mining_settings.json").read_text())["collection"]
            for folder in (".", "step-2")]
    assert [u["version"] for u in used] == [v.name for v in versions]
    assert (tmp_path / "ddp" / "final" / "model.safetensors").exists()
