"""One calm console: show_progress_bar=false silences every bar; one line per evaluation, any evaluator."""

from __future__ import annotations

import logging

import datasets
import pytest
from datasets import Dataset
from transformers.utils import logging as transformers_logging

from textdml.config import load_run_config
from textdml.console import bars_silenced, format_evaluation, own_bars_shown, quiet_progress_bars
from textdml.evaluation.build import LabelledRetrievalEvaluator
from textdml.evaluation.retrieval import InformationRetrievalEvaluator
from textdml.training.loop import train


def pairs_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    Dataset.from_dict({"anchor": [f"question {i}" for i in range(16)],
                       "positive": [f"answer {i} " + "x " * (i % 4) for i in range(16)]}).to_json(str(path))
    return path


def config(model_dir, tmp_path, *extra):
    return load_run_config(None, [f"train.path={pairs_file(tmp_path)}", f"model.name_or_path={model_dir}",
                                  f"training.output_dir={tmp_path / 'run'}", "training.batch_size=8",
                                  "training.max_steps=2", *extra])


def ir_evaluator():
    corpus = {f"d{i}": f"answer {i}" for i in range(8)}
    return InformationRetrievalEvaluator({f"q{i}": f"question {i}" for i in range(8)}, corpus,
                                         {f"q{i}": {f"d{i}"} for i in range(8)})


def test_show_progress_bar_false_silences_every_bar(tiny_model_dir, tmp_path, capfd):
    # The model is loaded by train() itself (transformers' "Loading weights" bar) from a data file
    # (datasets' bars), evaluated and saved (transformers' "Writing" bars).
    run = config(tiny_model_dir, tmp_path, "training.show_progress_bar=false", "training.eval_steps=1")
    capfd.readouterr()  # writing the test's data file drew a bar of its own
    train(run, evaluator=ir_evaluator())
    captured = capfd.readouterr()
    for bar in ("Loading weights", "Training", "Writing", "Generating", "it/s]", "%|"):
        assert bar not in captured.err and bar not in captured.out, (bar, captured.err[-2000:])
    assert captured.out.count("eval step") == 2  # evaluation lines are not bars: they stay


def test_one_line_per_evaluation_above_the_bar(tiny_model_dir, tmp_path, capfd, caplog):
    caplog.set_level(logging.INFO)  # as the CLI configures logging
    run = config(tiny_model_dir, tmp_path, "training.show_progress_bar=true", "training.eval_steps=1")
    capfd.readouterr()
    train(run, evaluator=ir_evaluator())
    captured = capfd.readouterr()
    lines = [line for line in captured.out.splitlines() if "eval step" in line]
    assert len(lines) == 2 and lines[0].startswith("eval step 1: ndcg@10 ")
    assert "Training" in captured.err  # the bar is on
    # The table no longer lands inside the bar: nothing but the one line reports the evaluation.
    assert "metric  " not in captured.out + captured.err + caplog.text


def test_the_labelled_evaluator_prints_its_line(tiny_model_dir, tmp_path, capfd):
    labelled = LabelledRetrievalEvaluator([f"text {i}" for i in range(12)], [i % 3 for i in range(12)])
    train(config(tiny_model_dir, tmp_path, "training.show_progress_bar=false", "training.eval_steps=1"),
          evaluator=labelled)
    lines = [line for line in capfd.readouterr().out.splitlines() if line.startswith("eval step")]
    assert len(lines) == 2 and all("recall@1 " in line for line in lines)


def test_quiet_progress_bars_restores_the_libraries_settings():
    assert transformers_logging.is_progress_bar_enabled() and datasets.is_progress_bar_enabled()
    with quiet_progress_bars():
        assert bars_silenced()
        assert not transformers_logging.is_progress_bar_enabled() and not datasets.is_progress_bar_enabled()
        with quiet_progress_bars(False):
            assert bars_silenced()  # an inner "no change" keeps the outer quiet
    assert not bars_silenced()
    assert transformers_logging.is_progress_bar_enabled() and datasets.is_progress_bar_enabled()


@pytest.mark.parametrize("limit,expected", [(8, "eval step 3: b 2.0000 | a 1.0000"), (1, "eval step 3: b 2.0000 (+1 more in metrics.jsonl)")])
def test_format_evaluation_puts_the_primary_metric_first(limit, expected):
    assert format_evaluation(3, {"a": 1.0, "b": 2.0}, primary="b", limit=limit) == expected


def test_matryoshka_sizes_print_on_the_evaluation_line():
    results = {"wordnet_ndcg@10": 0.8, "wordnet_recall@1": 0.5,
               "wordnet_dim128_ndcg@10": 0.7, "wordnet_dim128_recall@1": 0.4,
               "wordnet_dim64_ndcg@10": 0.6, "wordnet_dim64_recall@1": 0.3}
    line = format_evaluation(5, results, primary="wordnet_ndcg@10")
    assert line == ("eval step 5: wordnet_ndcg@10 0.8000 | wordnet_recall@1 0.5000 | wordnet_ndcg@10 by size "
                    "128 0.7000, 64 0.6000 (+2 more in metrics.jsonl)")


def test_matryoshka_evaluation_during_training_is_one_line(tiny_model_dir, tmp_path, capfd):
    evaluator = InformationRetrievalEvaluator({f"q{i}": f"question {i}" for i in range(8)},
                                              {f"d{i}": f"answer {i}" for i in range(8)},
                                              {f"q{i}": {f"d{i}"} for i in range(8)}, truncate_dims=[16, 8])
    train(config(tiny_model_dir, tmp_path, "training.show_progress_bar=false", "training.eval_steps=1"),
          evaluator=evaluator)
    out = capfd.readouterr().out
    lines = [line for line in out.splitlines() if "eval step" in line or "dim16" in line or "dim8" in line]
    assert len(lines) == 2, out
    assert all(" by size 16 " in line and ", 8 " in line for line in lines)


def test_evaluations_outside_the_training_bar_draw_their_own_bars():
    """eval_on_start and the final evaluation run with no training bar on screen: their encoding bars show."""
    with quiet_progress_bars():
        assert bars_silenced()
        with own_bars_shown(True):
            assert not bars_silenced()
        with own_bars_shown(False):  # training.show_progress_bar=false stays quiet
            assert bars_silenced()
        assert bars_silenced()
