"""The end of a run: final save first, the report, then the push; a stop request skips the push."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest

from tests.training.loop_inputs import make_config
from textdml.diagnostics.run import RunDiagnostics
from textdml.training.callbacks import Callback
from textdml.training.finish import FinishRun, PushToHub
from textdml.training.trainer import run_callbacks


def test_the_final_save_comes_first_the_push_after_the_report_and_the_users_last(tmp_path):
    class Mine(Callback):
        pass

    parts = SimpleNamespace(config=make_config("unused", tmp_path / "run"))
    callbacks = run_callbacks(parts, [Mine()], hub_token=None)
    assert [type(c) for c in callbacks.callbacks] == [FinishRun, RunDiagnostics, PushToHub, Mine]


@pytest.mark.parametrize(("is_main", "signum", "pushed"), [(True, None, True), (False, None, False),
                                                           (True, signal.SIGTERM, False)],
                         ids=["main", "other process", "after a stop request"])
def test_the_push_runs_once_on_the_main_process_and_not_after_a_stop(tmp_path, monkeypatch, is_main, signum, pushed):
    calls = []
    monkeypatch.setattr("textdml.hub.push.push_to_hub",
                        lambda folder, repo_id, **kwargs: calls.append((folder, repo_id, kwargs["token"]))
                        or SimpleNamespace(url=f"https://hub/{repo_id}"))
    config = make_config("unused", tmp_path / "run", "training.push_to_hub=alice/model")
    run = SimpleNamespace(config=config, accelerator=SimpleNamespace(is_main_process=is_main),
                          stop=SimpleNamespace(signum=signum), output_dir=tmp_path / "run")
    PushToHub("token").on_train_end(run)
    assert calls == ([(tmp_path / "run" / "final", "alice/model", "token")] if pushed else [])
