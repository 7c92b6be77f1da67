from __future__ import annotations

import importlib
import json
import shutil

import pytest

from tests.hub.conftest import run_config, write_pairs
from tests.training.loop_inputs import pairs_dataset
from textdml.training import trackers
from textdml.training.callbacks import Callback
from textdml.training.loop import train

EVENTS: list[tuple] = []


class RecordingCallback(Callback):
    """Named in training.callbacks by its dotted path (built with no arguments)."""

    def on_log(self, record, state):
        EVENTS.append(("log", state.global_step, "loss" in record))

    def on_evaluate(self, metrics, state):
        EVENTS.append(("evaluate", state.global_step, sorted(metrics)[0]))

    def on_save(self, path, kind, state):
        EVENTS.append(("save", state.global_step, kind, path.name))


def train_tiny(model_dir, tmp_path, *overrides, **kwargs):
    from textdml.evaluation.build import build_evaluator

    config = run_config(model_dir, tmp_path / "run", write_pairs(tmp_path / "eval.jsonl"), *overrides)
    return train(config, evaluator=build_evaluator(config.eval), train_dataset=pairs_dataset(), **kwargs)


def test_metrics_reach_tensorboard_mlflow_and_callbacks(tiny_model_dir, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # MLflow's file store, offline, in the test folder.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    # The trainer imports the callback by its dotted path: read the events of that module.
    events = importlib.import_module("tests.training.test_trackers").EVENTS
    events.clear()
    in_code = []

    class InCode(Callback):
        def on_evaluate(self, metrics, state):
            in_code.append(state.global_step)

    train_tiny(tiny_model_dir, tmp_path, "training.report_to=[tensorboard, mlflow]", "training.save_steps=2",
               "training.callbacks=[tests.training.test_trackers.RecordingCallback]", "training.tracker_project=tiny",
               callbacks=[InCode()])

    event_dirs = [p.parent for p in (tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*")]
    scalars = {}
    for folder in event_dirs:
        accumulator = EventAccumulator(str(folder)).Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars[tag] = [(e.step, e.value) for e in accumulator.Scalars(tag)]
    assert [step for step, _ in scalars["loss"]] == [1, 2, 3]
    assert [step for step, _ in scalars["eval_ndcg@10"]] == [2, 3]

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("tiny")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3]
    assert run.data.params["training.batch_size"] == "8"
    expected_losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
                       if "loss" in json.loads(line)]
    assert [round(m.value, 6) for m in client.get_metric_history(run.info.run_id, "loss")] == expected_losses

    # Whether step 3 also beats step 2 (a second "best" save) depends on the random tiny model.
    assert [e for e in events if e != ("save", 3, "best", "best")] == [
        ("log", 1, True), ("log", 2, True), ("log", 2, False), ("evaluate", 2, "accuracy@1"), ("save", 2, "best", "best"),
        ("save", 2, "checkpoint", "checkpoint-2"), ("log", 3, True), ("log", 3, False), ("evaluate", 3, "accuracy@1"),
        ("save", 3, "final", "final")]
    assert in_code == [2, 3]


def test_no_trackers_when_asked(tiny_model_dir, tmp_path):
    train_tiny(tiny_model_dir, tmp_path, "training.report_to=none", "eval.data=null", "training.eval_steps=null")
    assert not (tmp_path / "run" / "tensorboard").exists() and (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_tracker_that_is_not_installed_names_the_package(monkeypatch, tiny_model_dir, tmp_path):
    real = trackers.importlib.util.find_spec
    monkeypatch.setattr(trackers.importlib.util, "find_spec", lambda name: None if name == "comet_ml" else real(name))
    with pytest.raises(ValueError, match=r"tracker 'comet_ml' is not installed: pip install comet-ml"):
        train_tiny(tiny_model_dir, tmp_path, "training.report_to=[tensorboard, comet_ml]")
    assert not (tmp_path / "run").exists()  # failed before anything was loaded or written


def test_unknown_tracker_and_callback_names():
    with pytest.raises(ValueError, match=r"unknown tracker 'tensorbord': did you mean 'tensorboard'"):
        trackers.resolve_trackers(["tensorbord"])
    with pytest.raises(ValueError, match="stands alone"):
        trackers.resolve_trackers(["all", "mlflow"])
    assert trackers.resolve_trackers("none") == []
    from textdml.training.callbacks import create_callbacks

    with pytest.raises(ValueError, match=r"training.callbacks\[0\]: cannot import 'no_such_module.Thing'"):
        create_callbacks(["no_such_module.Thing"])
    with pytest.raises(TypeError, match="must subclass"):
        create_callbacks([], [object()])


def test_hyperparameters_are_flat_scalars():
    flat = trackers.flat_hyperparameters({"training": {"batch_size": 8, "report_to": ["mlflow"],
                                                       "tracker_kwargs": {"wandb": {"key": "k"}}},
                                          "miner": None, "index": {"api_key": "secret"}})
    assert flat == {"training.batch_size": 8, "training.report_to": "['mlflow']", "miner": "None"}


def test_tensorboard_scalars_after_a_resume_replace_the_killed_runs(tiny_model_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.training.loop_inputs import make_config

    run = tmp_path / "run"
    overrides = ("training.max_steps=7", "training.save_steps=4", "training.save_total_limit=5",
                 "training.report_to=tensorboard", "training.tracker_project=tiny")
    train(make_config(tiny_model_dir, run, *overrides), train_dataset=pairs_dataset())
    shutil.rmtree(run / "final")  # as if killed after step 7 was logged: steps 5..7 are logged twice
    train(make_config(tiny_model_dir, run, *overrides, "training.resume_from_checkpoint=latest"),
          train_dataset=pairs_dataset())
    accumulator = EventAccumulator(str(run / "tensorboard" / "tiny")).Reload()
    logged = [(e.step, round(e.value, 4)) for e in accumulator.Scalars("loss")]
    records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    resumed = [(r["step"], round(r["loss"], 4)) for r in records]
    assert logged == resumed and [step for step, _ in logged] == [1, 2, 3, 4, 5, 6, 7]


CALLED: list[str] = []


def not_a_callback():
    """Named in training.callbacks: must be refused without being called."""
    CALLED.append("called")
    return RecordingCallback()


AN_INSTANCE = RecordingCallback()


def test_a_callback_path_that_is_not_a_callback_is_refused_before_it_is_called():
    from textdml.training.callbacks import create_callbacks

    imported = importlib.import_module("tests.training.test_trackers")  # the module the dotted paths reach
    imported.CALLED.clear()
    with pytest.raises(ValueError, match=r"training.callbacks\[1\]: 'tests.training.test_trackers.not_a_callback' is "
                                         r"a function, not a class; name a subclass of textdml.training.callbacks"):
        create_callbacks(["tests.training.test_trackers.RecordingCallback",
                          "tests.training.test_trackers.not_a_callback"])
    assert imported.CALLED == []
    with pytest.raises(ValueError, match=r"training.callbacks\[0\]: 'collections.OrderedDict' is a class but not a "
                                         "Callback subclass"):
        create_callbacks(["collections.OrderedDict"])
    built = create_callbacks(["tests.training.test_trackers.AN_INSTANCE"]).callbacks
    assert built == [imported.AN_INSTANCE]
