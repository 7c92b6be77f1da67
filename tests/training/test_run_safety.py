"""Runs that cannot mix or lie: no pickled code on resume, one run per folder, signals at step
boundaries, atomic final/ and best/, metrics.jsonl in step with the checkpoint (issue 16)."""

from __future__ import annotations

import json
import shutil
import signal

import pytest
import torch
from safetensors.torch import load_file

from tests.training.loop_inputs import make_config, pairs_dataset
from textdml.training.checkpoint import CheckpointError
from textdml.training.loop import train
from textdml.training.run_folder import RunFolderError, atomic_folder, truncate_metrics
from textdml.training.signals import TrainingInterrupted


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def assert_bitwise_equal(actual, expected):
    assert actual.keys() == expected.keys()
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


class PlantedCode:
    """Unpickling this runs ``open(marker, 'w')``: what a planted checkpoint file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


@pytest.mark.parametrize("planted", ["custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin"])
def test_resume_refuses_a_planted_pickle(tiny_model_dir, tmp_path, planted):
    run = tmp_path / "run"
    train(make_config(tiny_model_dir, run, "training.max_steps=2", "training.save_steps=2"),
          train_dataset=pairs_dataset())
    checkpoint = run / "checkpoints" / "checkpoint-2"
    marker = tmp_path / "marker"
    torch.save(PlantedCode(marker), checkpoint / planted)
    resumed = make_config(tiny_model_dir, run, "training.max_steps=3", "training.save_steps=2",
                          "training.resume_from_checkpoint=latest", "training.force_resume=true")
    match = "a state file" if planted.endswith(".bin") else planted
    with pytest.raises(CheckpointError, match=f"{match} does not load with weights_only=True"):
        train(resumed, train_dataset=pairs_dataset())
    assert not marker.exists()


def test_every_saved_pickle_loads_weights_only(tiny_model_dir, tmp_path):
    from accelerate.utils.other import load

    run = tmp_path / "run"
    train(make_config(tiny_model_dir, run, "training.max_steps=2", "training.save_steps=2"),
          train_dataset=pairs_dataset())
    pickles = sorted((run / "checkpoints" / "checkpoint-2").glob("*.pkl"))
    assert {p.name for p in pickles} >= {"custom_checkpoint_0.pkl", "random_states_0.pkl"}
    for path in pickles:
        load(path, weights_only=True)  # raises on anything but plain data


def test_another_run_in_the_same_folder_is_an_error_unless_overwritten(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    train(make_config(tiny_model_dir, run, "training.max_steps=4", "training.save_steps=2"),
          train_dataset=pairs_dataset())
    other = ("training.max_steps=2", "training.save_steps=1", "training.learning_rate=5e-4")
    with pytest.raises(RunFolderError, match=r"holds another run .*training.learning_rate 0.001 -> 0.0005"):
        train(make_config(tiny_model_dir, run, *other), train_dataset=pairs_dataset())
    # The old run is untouched by the refused start.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-4"]
    train(make_config(tiny_model_dir, run, *other, "training.overwrite_output_dir=true"),
          train_dataset=pairs_dataset())
    # Rotation kept this run's newest checkpoints, not the old run's checkpoint-4.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-1", "checkpoint-2"]
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]


def test_restarting_the_same_run_without_resume_is_an_error(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    overrides = ("training.max_steps=2", "training.save_steps=2")
    train(make_config(tiny_model_dir, run, *overrides), train_dataset=pairs_dataset())
    with pytest.raises(RunFolderError, match="resume_from_checkpoint=latest"):
        train(make_config(tiny_model_dir, run, *overrides), train_dataset=pairs_dataset())


def test_resume_refuses_a_checkpoint_of_another_config(tiny_model_dir, tmp_path):
    first = tmp_path / "first"
    train(make_config(tiny_model_dir, first, "training.max_steps=4", "training.save_steps=2"),
          train_dataset=pairs_dataset())
    second = tmp_path / "second"
    (second / "checkpoints").mkdir(parents=True)
    shutil.copytree(first / "checkpoints" / "checkpoint-2", second / "checkpoints" / "checkpoint-2")
    changed = ("training.max_steps=4", "training.save_steps=2", "training.resume_from_checkpoint=latest",
               "loss.name=info_nce", "loss.temperature=0.1")
    with pytest.raises(RunFolderError, match=r"another config \(loss.temperature <unset> -> 0.1\)"):
        train(make_config(tiny_model_dir, second, *changed), train_dataset=pairs_dataset())
    result = train(make_config(tiny_model_dir, second, *changed, "training.force_resume=true"),
                   train_dataset=pairs_dataset())
    assert result.global_step == 4


def test_resume_with_another_model_is_a_clear_error(tiny_model_dir, tmp_path):
    from transformers import BertModel

    from textdml.models.embedder import tiny_bert_config

    run = tmp_path / "run"
    train(make_config(tiny_model_dir, run, "training.max_steps=2", "training.save_steps=2"),
          train_dataset=pairs_dataset())
    wider = tmp_path / "wider"
    shutil.copytree(tiny_model_dir, wider)
    config = tiny_bert_config(vocab_size=json.loads((tiny_model_dir / "config.json").read_text())["vocab_size"])
    config.hidden_size, config.intermediate_size = 48, 96
    BertModel(config).save_pretrained(wider)
    overrides = ("training.max_steps=3", "training.resume_from_checkpoint=latest")
    with pytest.raises(RunFolderError, match="model.name_or_path"):
        train(make_config(wider, run, *overrides), train_dataset=pairs_dataset())
    with pytest.raises(CheckpointError, match="does not fit this run's model"):
        train(make_config(wider, run, *overrides, "training.force_resume=true"), train_dataset=pairs_dataset())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_right_after_the_optimizer_step_checkpoints_that_step(tiny_model_dir, tmp_path, monkeypatch, signum):
    import os

    import textdml.training.loop as loop

    overrides = ("training.max_steps=5",)
    unbroken = tmp_path / "unbroken"
    train(make_config(tiny_model_dir, unbroken, *overrides), train_dataset=pairs_dataset())

    create_optimizer, steps = loop.create_optimizer, []

    def signalling_optimizer(*args, **kwargs):
        optimizer = create_optimizer(*args, **kwargs)

        def after_step(*_):  # the worst moment: weights updated, step counter not yet
            steps.append(1)
            if len(steps) == 3:
                os.kill(os.getpid(), signum)

        optimizer.register_step_post_hook(after_step)
        return optimizer

    def unhandled(*_):  # safety net: without textdml's handler SIGTERM would end pytest itself
        raise RuntimeError("the signal reached the default handler")

    previous = signal.signal(signal.SIGTERM, unhandled) if signum == signal.SIGTERM else None
    sigint_before = signal.getsignal(signal.SIGINT)  # SIG_IGN where pytest was started in the background
    try:
        monkeypatch.setattr(loop, "create_optimizer", signalling_optimizer)
        run = tmp_path / "run"
        with pytest.raises(TrainingInterrupted) as stopped:
            train(make_config(tiny_model_dir, run, *overrides), train_dataset=pairs_dataset())
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    assert stopped.value.signum == signum and stopped.value.checkpoint.name == "checkpoint-3"
    assert signal.getsignal(signal.SIGINT) is sigint_before  # handlers restored
    monkeypatch.setattr(loop, "create_optimizer", create_optimizer)
    train(make_config(tiny_model_dir, run, *overrides, "training.resume_from_checkpoint=latest"),
          train_dataset=pairs_dataset())
    assert_bitwise_equal(weights(run / "final"), weights(unbroken / "final"))


def test_a_kill_during_the_final_save_leaves_no_partial_model(tiny_model_dir, tmp_path, monkeypatch):
    from textdml.models.embedder import Embedder

    save = Embedder.save_pretrained

    def killed_mid_save(self, path, *args, **kwargs):
        folder = save(self, path, *args, **kwargs)
        (folder / "model.safetensors").write_bytes(b"torn")  # what a kill mid-write leaves
        raise OSError(28, "No space left on device")

    run = tmp_path / "run"
    overrides = ("training.max_steps=2",)
    train(make_config(tiny_model_dir, run, *overrides), train_dataset=pairs_dataset())
    good = weights(run / "final")
    monkeypatch.setattr(Embedder, "save_pretrained", killed_mid_save)
    with pytest.raises(OSError):
        train(make_config(tiny_model_dir, run, *overrides), train_dataset=pairs_dataset())
    assert_bitwise_equal(weights(run / "final"), good)  # the previous final/ is whole
    assert not list(run.glob(".partial-*"))


def test_atomic_folder_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "best"
    with atomic_folder(target) as folder:
        (folder / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_folder(target) as folder:
        (folder / "a").write_text("half")
        raise RuntimeError("killed")
    assert (target / "a").read_text() == "1"
    with atomic_folder(target) as folder:
        (folder / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"] and [p.name for p in tmp_path.iterdir()] == ["best"]


def test_metrics_are_not_repeated_after_a_resume(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    overrides = ("training.max_steps=7", "training.save_steps=4", "training.save_total_limit=5")
    train(make_config(tiny_model_dir, run, *overrides), train_dataset=pairs_dataset())
    shutil.rmtree(run / "final")  # as if killed after step 7 was logged
    train(make_config(tiny_model_dir, run, *overrides, "training.resume_from_checkpoint=latest"),
          train_dataset=pairs_dataset())
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6, 7]


def test_truncate_metrics_drops_later_steps_and_a_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "eval_x": 0.5}\n{"step": 3}\n{"ste')
    assert truncate_metrics(path, 2) == [{"step": 1}, {"step": 2, "eval_x": 0.5}]
    assert path.read_text() == '{"step": 1}\n{"step": 2, "eval_x": 0.5}\n'


def test_output_dir_that_is_a_file_fails_before_loading(tiny_model_dir, tmp_path):
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(RunFolderError, match="is a file, not a folder"):
        train(make_config(tiny_model_dir, tmp_path / "run", "training.max_steps=1"), train_dataset=pairs_dataset())
