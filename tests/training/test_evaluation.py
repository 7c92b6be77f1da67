"""training/evaluation.py: the metrics log, evaluation during training, and best/."""

from __future__ import annotations

import json

import pytest
from accelerate import Accelerator

from textdml.training.callbacks import Callback, CallbackList
from textdml.training.checkpoint import TrainerState
from textdml.training.evaluation import MetricLog, check_best_metric, run_evaluation


class Recorder(Callback):
    def __init__(self):
        self.logged, self.evaluated, self.saved = [], [], []

    def on_log(self, record, state):
        self.logged.append(record)

    def on_evaluate(self, metrics, state):
        self.evaluated.append(metrics)

    def on_save(self, path, kind, state):
        self.saved.append(kind)


class Scores:
    """An evaluator giving the next score of a list at each call."""

    metric_names = ("ndcg@10",)
    primary_metric = "ndcg@10"

    def __init__(self, *scores):
        self.scores = list(scores)

    def __call__(self, model):
        return {"ndcg@10": self.scores.pop(0)}


def test_the_log_writes_jsonl_and_tells_callbacks_only_when_enabled(tmp_path):
    recorder = Recorder()
    log = MetricLog(tmp_path, True, callbacks=CallbackList([recorder]))
    log.write({"step": 1, "loss": 0.5})
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 1, "loss": 0.5}
    assert recorder.logged == [{"step": 1, "loss": 0.5}]
    quiet = MetricLog(tmp_path / "other", False)  # another process: records kept, nothing written
    quiet.write({"step": 1})
    assert quiet.records == [{"step": 1}] and not (tmp_path / "other").exists()


def test_an_unknown_best_metric_fails_before_training_naming_the_choices():
    with pytest.raises(ValueError, match=r"'mrr' is not among .*ndcg@10"):
        check_best_metric("mrr", Scores())
    check_best_metric("ndcg@10", Scores())
    check_best_metric("anything", lambda model: {})  # an evaluator without metric_names is checked later


def test_best_is_kept_only_when_the_metric_improves(tmp_path, tiny_embedder):
    recorder = Recorder()
    log = MetricLog(tmp_path, True, callbacks=CallbackList([recorder]))
    state, best = TrainerState(), tmp_path / "best"
    evaluator, accelerator = Scores(0.9, 0.3, 0.4, 0.2), Accelerator(cpu=True)
    # eval_on_start: the starting model is no best, however good
    run_evaluation(evaluator, tiny_embedder, state, log, best, None, accelerator, track_best=False)
    assert not best.exists() and state.best_metric is None
    for step in (1, 2, 3):
        state.global_step = step
        run_evaluation(evaluator, tiny_embedder, state, log, best, None, accelerator)
    assert (state.best_metric, state.best_step) == (0.4, 2) and (best / "modules.json").exists()
    assert recorder.saved == ["best", "best"] and [m["ndcg@10"] for m in recorder.evaluated] == [0.9, 0.3, 0.4, 0.2]
    assert [(r["step"], r["eval_ndcg@10"]) for r in log.records] == [(0, 0.9), (1, 0.3), (2, 0.4), (3, 0.2)]
