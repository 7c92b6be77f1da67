"""Mining fixtures: anchor/positive pairs, a corpus of random sentences, a tiny saved model (the
engine fixtures, both engines, are in tests/conftest.py)."""

from __future__ import annotations

import random

import pytest
from datasets import Dataset

from textdml.models import Embedder

WORDS = ("cat dog bird fish stock bond market price river lake sea hill tree leaf root seed sun moon star rain "
         "snow wind storm cloud king queen law court judge music song dance poem story").split()


def sentence(rng: random.Random, n: int = 6) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


@pytest.fixture(scope="module")
def pairs() -> Dataset:
    rng = random.Random(0)
    anchors = [sentence(rng, 4) for _ in range(30)]
    positives = [sentence(rng) for _ in range(30)]
    # Two anchors with a second positive each: several positives per anchor, as in real data.
    anchors += [anchors[0], anchors[5]]
    positives += [sentence(rng), sentence(rng)]
    return Dataset.from_dict({"anchor": anchors, "positive": positives})


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    rng = random.Random(1)
    return [sentence(rng) for _ in range(60)]


@pytest.fixture(scope="module")
def saved_model(tiny_model_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("mining_model") / "m"
    Embedder.from_pretrained(tiny_model_dir, normalize=True).save_pretrained(path)
    return path
