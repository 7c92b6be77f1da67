from __future__ import annotations

import pytest
import torch

pytest.importorskip("PIL")

from tests.fakes_vision import ColourDualEncoder, write_colour_images  # noqa: E402
from textdml.evaluation.image_text import (  # noqa: E402
    ImageTextRetrievalEvaluator,
    LabelledImageEvaluator,
    ZeroShotEvaluator,
    recall_at_k,
)


def test_recall_at_k_against_a_loop():
    scores = torch.randn(7, 9, generator=torch.Generator().manual_seed(0))
    correct = torch.rand(7, 9, generator=torch.Generator().manual_seed(1)) > 0.7
    results = recall_at_k(scores, correct, (1, 3))
    for k in (1, 3):
        expected = sum(bool(correct[i, scores[i].argsort(descending=True)[:k]].any()) for i in range(7)) / 7
        assert results[k] == pytest.approx(expected)


def test_colour_model_retrieves_its_colour(tmp_path):
    rows = write_colour_images(tmp_path)
    images, texts = [r["image"] for r in rows], [f"a {r['label']} square" for r in rows]  # captions repeat
    evaluator = ImageTextRetrievalEvaluator(images, texts, name="toy", ks=(1, 2))
    results = evaluator(ColourDualEncoder())
    assert results["toy_i2t_recall@1"] == 1.0 and results["toy_t2i_recall@1"] == 1.0  # duplicates count
    assert evaluator.metric_names == list(results)


def test_zero_shot_and_labelled_images(tmp_path):
    rows = write_colour_images(tmp_path)
    images, labels = [r["image"] for r in rows], [r["label"] for r in rows]
    zero_shot = ZeroShotEvaluator(images, labels)(ColourDualEncoder())
    assert zero_shot["zero_shot_top1"] == 1.0
    labelled = LabelledImageEvaluator(images, labels)(ColourDualEncoder())
    assert labelled["recall@1"] == 1.0 and labelled["map@r"] == pytest.approx(1.0)


def test_mismatched_lengths():
    with pytest.raises(ValueError, match="one caption per image"):
        ImageTextRetrievalEvaluator(["a.png"], ["x", "y"])


def test_labelled_image_data_gets_retrieval_and_zero_shot(tmp_path):
    from datasets import Dataset

    from textdml.config import DataConfig, EvalConfig
    from textdml.evaluation.build import build_evaluator

    rows = write_colour_images(tmp_path / "img")
    path = tmp_path / "labelled.jsonl"
    Dataset.from_dict({"image": [r["image"] for r in rows], "label": [r["label"] for r in rows]}).to_json(str(path))
    evaluator = build_evaluator(EvalConfig(data=DataConfig(path=str(path))))
    results = evaluator(ColourDualEncoder())
    assert evaluator.primary_metric == "recall@1" and evaluator.metric_names == list(results)
    assert results["recall@1"] == 1.0 and results["zero_shot_top1"] == 1.0
