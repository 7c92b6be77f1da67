from __future__ import annotations

import warnings

import pytest
from datasets import Dataset

from textdml.config import load_run_config
from textdml.diagnostics.classes import SmallClassesWarning, count_classes, warn_small_classes
from textdml.losses.proxy_anchor import ProxyAnchorLoss
from textdml.losses.triplet import TripletLoss
from textdml.training.loop import train


def test_count_classes():
    counts = count_classes([1, 1, 2, 3, 3, 3])
    assert (counts.num_classes, counts.num_small, counts.smallest, counts.largest) == (3, 1, 1, 3)
    assert not counts.all_small and count_classes([1, 2]).all_small


def test_warns_for_pair_losses_but_not_class_level_losses():
    data = Dataset.from_dict({"anchor": ["a", "b", "c", "d"], "label": [0, 0, 1, 2]})
    with pytest.warns(SmallClassesWarning, match="2 of 3 classes .* fewer than two rows"):
        warn_small_classes(data, "label", TripletLoss(), "triplet")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_small_classes(data, "label", ProxyAnchorLoss(num_classes=3, embedding_size=4), "proxy_anchor")
        warn_small_classes(Dataset.from_dict({"anchor": ["a", "b"], "label": [0, 0]}), "label", TripletLoss(), "triplet")


def test_training_on_one_row_classes_warns_once_even_without_preflight(tiny_model_dir, tmp_path):
    data = Dataset.from_dict({"anchor": [f"text number {i}" for i in range(16)], "label": list(range(16))})
    config = load_run_config(None, ["train.path=in-memory", f"model.name_or_path={tiny_model_dir}",
                                    f"training.output_dir={tmp_path}", "training.batch_size=8", "loss.name=triplet",
                                    "training.max_steps=2", "training.preflight=false", "training.report=false",
                                    "training.show_progress_bar=false"])
    with pytest.warns(SmallClassesWarning) as caught:
        result = train(config, train_dataset=data)
    messages = [str(w.message) for w in caught if w.category is SmallClassesWarning]
    assert len(messages) == 1 and "16 of 16 classes" in messages[0] and "loss 'triplet' is 0.0" in messages[0]
    assert all(record["loss"] == 0.0 for record in result.metrics if "loss" in record)
