"""Soak: training runs killed at random points (SIGKILL, SIGTERM, SIGINT) and resumed end with the
weights of an unbroken run, bit for bit; indexing killed at random points and re-run ends with
every document once (issue 16). Slow: about a minute per five runs on two cores.

Run with ``pytest tests/integration/test_soak_faults.py -m slow -s --basetemp=/tmp/soak`` to see the
counts (a basetemp of its own: concurrent pytest sessions prune each other's default ones).
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TRAIN_RUNS = int(os.environ.get("TEXTDML_SOAK_TRAIN_RUNS", "20"))
INDEX_RUNS = int(os.environ.get("TEXTDML_SOAK_INDEX_RUNS", "8"))
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)
STEPS = 12


def write_recipe(tmp_path: Path, model_dir: Path) -> Path:
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"anchor": f"question number {i}", "positive": f"the answer is {i} "
                                        + "long " * (i % 5)}) + "\n" for i in range(40)))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model: {{name_or_path: {model_dir}}}\ntrain: {{path: {data}}}\n"
                      f"training: {{max_steps: {STEPS}, batch_size: 8, learning_rate: 1.0e-3, save_steps: 3, "
                      "logging_steps: 1, show_progress_bar: false, mixed_precision: 'no'}\n")
    return recipe


def start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-m", "textdml", *args], stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            env=env)


def run_to_end(args: list[str], log: Path, timeout: float = 1800) -> int:
    return start(args, log).wait(timeout)


def interrupt(process: subprocess.Popen, started: Path, window: float, rng: random.Random) -> tuple[str, int]:
    """Signal ``process`` at a random moment: while loading (1 in 8), else up to ``window`` s into training."""
    signum = rng.choice(SIGNALS)
    deadline = time.monotonic() + 900
    if rng.random() < 1 / 8:
        time.sleep(rng.uniform(0, 3))
    else:
        while not started.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, window))
    if process.poll() is None:
        process.send_signal(signum)
    return signal.Signals(signum).name, process.wait(1800)


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.slow
def test_killed_training_runs_resume_bitwise(tmp_path, tiny_model_dir):
    import torch

    rng = random.Random(16)
    recipe = write_recipe(tmp_path, tiny_model_dir)
    unbroken = tmp_path / "unbroken"
    began = time.monotonic()
    assert run_to_end(["train", "--config", str(recipe), f"training.output_dir={unbroken}"], tmp_path / "u.log") == 0
    window = max(1.0, (time.monotonic() - began) * 0.6)  # most of a run is loading; sample past its end too
    expected = weights(unbroken / "final")
    outcomes: collections.Counter[str] = collections.Counter()
    kills = 0
    for i in range(TRAIN_RUNS):
        run, log = tmp_path / f"run{i}", tmp_path / f"run{i}.log"
        args = ["train", "--config", str(recipe), f"training.output_dir={run}", "training.resume_from_checkpoint=latest"]
        for _ in range(1 + (rng.random() < 0.3)):  # some runs are killed again while resuming
            name, code = interrupt(start(args, log), run / "metrics.jsonl", window, rng)
            kills += code != 0
            outcomes[f"{name} -> exit {code}"] += 1
        assert run_to_end(args, log) == 0, log.read_text()[-3000:]
        actual = weights(run / "final")
        assert actual.keys() == expected.keys()
        for key in expected:
            assert torch.equal(actual[key], expected[key]), (i, key, log.read_text()[-2000:])
        steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert steps == list(range(1, STEPS + 1)), (i, steps)
        assert not list(run.rglob(".partial-*")), i
    print(f"\nsoak: {TRAIN_RUNS} training runs, {kills} interrupted, all resumed bitwise; outcomes {dict(outcomes)}")


@pytest.mark.slow
def test_killed_indexing_reruns_write_every_document_once(tmp_path, tiny_model_dir):
    from qdrant_client import QdrantClient

    from textdml.models import Embedder

    rng = random.Random(61)
    model = Embedder.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "model")
    docs = tmp_path / "docs.jsonl"
    count = 3000
    docs.write_text("".join(json.dumps({"id": f"doc-{i}", "text": f"document {i} about topic {i % 17}"}) + "\n"
                            for i in range(count)))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("train: {path: unused}\nindex: {batch_size: 32, collection: soak}\n")
    # The window to signal in: from the moment the Qdrant folder appears to the end of the run.
    reference = start(["index", "--config", str(recipe), "--model", str(model), "--data", str(docs),
                       f"index.path={tmp_path / 'reference'}"], tmp_path / "ref.log")
    while not (tmp_path / "reference").exists() and reference.poll() is None:
        time.sleep(0.01)
    began = time.monotonic()
    assert reference.wait(1800) == 0
    window = max(0.2, time.monotonic() - began)
    outcomes: collections.Counter[str] = collections.Counter()
    for i in range(INDEX_RUNS):
        path, log = tmp_path / f"vectors{i}", tmp_path / f"index{i}.log"
        args = ["index", "--config", str(recipe), "--model", str(model), "--data", str(docs), f"index.path={path}"]
        name, code = interrupt(start(args, log), path, window, rng)
        outcomes[f"{name} -> exit {code}"] += 1
        assert run_to_end(args, log) == 0, log.read_text()[-3000:]
        client = QdrantClient(path=str(path))
        try:
            points, offset = [], None
            while True:
                batch, offset = client.scroll("soak", limit=256, offset=offset, with_payload=True)
                points += batch
                if offset is None:
                    break
        finally:
            client.close()
        ids = collections.Counter(p.payload.get("id") for p in points)
        assert len(points) == count and len(ids) == count and max(ids.values()) == 1, (i, len(points))
    print(f"\nsoak: {INDEX_RUNS} indexing runs interrupted and re-run, each ended with {count}/{count} documents "
          f"once; outcomes {dict(outcomes)}")
