"""Failures a user can fix are one ``textdml <verb>: error: ...`` line, exit 2; ``--debug`` shows
the traceback; anything unexplained (a bug) keeps its traceback (issue 16)."""

from __future__ import annotations

import http.server
import json
import os
import threading

import pytest

from tests.cli_checks import AlwaysNanLoss, error_line, write_recipe
from textdml.cli import main
from textdml.registry import LOSSES

LOSSES.register("cli_test_nan")(AlwaysNanLoss)


@pytest.fixture
def recipe(tmp_path, tiny_model_dir):
    return write_recipe(tmp_path, tiny_model_dir, 8, "max_steps: 1, batch_size: 4, show_progress_bar: false")


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, tiny_model_dir):
    from textdml.models import Embedder

    return str(Embedder.from_pretrained(tiny_model_dir).save_pretrained(tmp_path_factory.mktemp("saved") / "m"))


@pytest.fixture
def documents(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document {i}"}) + "\n" for i in range(4)))
    return str(path)


def test_nan_loss_is_one_line(recipe, capsys):
    # The preflight would report the NaN first; this checks the loop's own stop.
    assert main(["train", "--config", recipe, "loss.name=cli_test_nan", "training.preflight=false"]) == 2
    assert "the loss is nan at step 1" in error_line(capsys, "train")


def test_model_path_that_is_a_file(recipe, tmp_path, capsys):
    (tmp_path / "model.bin").write_text("x")
    assert main(["train", "--config", recipe, f"model.name_or_path={tmp_path / 'model.bin'}"]) == 2
    assert "is a file; pass the folder" in error_line(capsys, "train")


def test_output_dir_that_is_a_file(recipe, tmp_path, capsys):
    (tmp_path / "out").write_text("x")
    assert main(["train", "--config", recipe, f"training.output_dir={tmp_path / 'out'}"]) == 2
    assert "is a file, not a folder" in error_line(capsys, "train")


def test_model_folder_without_weights(recipe, tmp_path, tiny_model_dir, capsys):
    import shutil

    empty = tmp_path / "no-weights"
    shutil.copytree(tiny_model_dir, empty, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    assert main(["train", "--config", recipe, f"model.name_or_path={empty}"]) == 2
    line = error_line(capsys, "train")
    assert "no-weights' has a config.json but no weights" in line and "save or copy the model again" in line


def test_disk_full(recipe, tmp_path, capsys):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").symlink_to("/dev/full")  # every write there fails with ENOSPC
    assert main(["train", "--config", recipe, "training.logging_steps=1"]) == 2
    line = error_line(capsys, "train")
    assert "disk full writing" in line and "metrics.jsonl" in line


def test_a_full_disk_during_a_checkpoint_is_named(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from textdml.errors import explain
    from textdml.training.checkpoint import disk_full_error

    torch_error = RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10, 10, 0))
    replaced = disk_full_error(torch_error, tmp_path / ".partial-checkpoint-4")
    assert replaced is not None and ".partial-checkpoint-4" in explain(replaced)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 << 30, 0, 10 << 30))
    assert disk_full_error(torch_error, tmp_path / "x") is None  # plenty of room: another cause


def test_qdrant_folder_locked_by_another_client(recipe, tmp_path, saved_model, documents, capsys):
    from qdrant_client import QdrantClient

    holder = QdrantClient(path=str(tmp_path / "vectors"))  # another process would hold the same lock
    try:
        assert main(["index", "--config", recipe, "--model", saved_model, "--data", documents,
                     "index.engine=client", f"index.path={tmp_path / 'vectors'}"]) == 2
    finally:
        holder.close()
    assert "is open in another process" in error_line(capsys, "index")


def test_connection_refused(recipe, saved_model, documents, capsys):
    assert main(["index", "--config", recipe, "--model", saved_model, "--data", documents,
                 "index.path=null", "index.url=http://127.0.0.1:1"]) == 2
    assert "cannot reach the server at http://127.0.0.1:1" in error_line(capsys, "index")


class Unavailable(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802  (the http.server spelling)
        self.send_response(503)
        self.end_headers()
        self.wfile.write(b"overloaded")

    do_POST = do_PUT = do_GET

    def log_message(self, *args):
        pass


def test_server_503(recipe, saved_model, documents, capsys):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert main(["index", "--config", recipe, "--model", saved_model, "--data", documents, "index.path=null",
                     f"index.url=http://127.0.0.1:{server.server_port}"]) == 2
    finally:
        server.shutdown()
    line = error_line(capsys, "index")
    assert "answered 503 Service Unavailable" in line and "retry" in line


def test_debug_shows_the_traceback(recipe, tmp_path):
    (tmp_path / "out").write_text("x")
    from textdml.training.run_folder import RunFolderError

    with pytest.raises(RunFolderError):
        main(["train", "--debug", "--config", recipe, f"training.output_dir={tmp_path / 'out'}"])
    with pytest.raises(RunFolderError):
        main(["--debug", "train", "--config", recipe, f"training.output_dir={tmp_path / 'out'}"])


def test_a_bug_keeps_its_traceback(recipe, monkeypatch):
    import textdml.cli as cli

    def broken(config):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "run_train", broken)
    with pytest.raises(ZeroDivisionError):
        main(["train", "--config", recipe])


def test_secrets_are_masked_in_the_error_line(recipe, monkeypatch, capsys):
    import textdml.cli as cli

    def leaky(config, *args, **kwargs):
        raise ValueError(f"server refused key {config.index.api_key}")

    monkeypatch.setattr(cli, "run_index", leaky)
    assert main(["index", "--config", recipe, "--model", "m", "index.path=null", "index.url=http://127.0.0.1:1",
                 "index.api_key=topsecret-123"]) == 2
    line = error_line(capsys, "index")
    assert "topsecret-123" not in line and "server refused key ***" in line


def test_paths_under_the_working_folder_are_not_masked(recipe, documents, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PWD", str(tmp_path))  # "pwd" reads like a password key, but the shell sets it to a folder
    monkeypatch.setenv("OLDPWD", str(tmp_path.parent))
    missing = tmp_path / "runs" / "nope"
    assert main(["index", "--config", recipe, "--model", str(missing), "--data", documents,
                 f"index.path={tmp_path / 'idx'}"]) == 2
    line = error_line(capsys, "index")
    assert str(missing) in line and "***" not in line


def test_debug_traceback_masks_the_url_password(recipe, monkeypatch, capsys):
    import sys

    import textdml.cli as cli

    def leaky(config, *args, **kwargs):
        raise ConnectionError(f"cannot reach {config.index.url}")

    monkeypatch.setattr(cli, "run_index", leaky)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # main installs a masking hook: undo it afterwards
    with pytest.raises(ConnectionError) as raised:
        main(["index", "--debug", "--config", recipe, "--model", "m", "index.path=null",
              "index.url=http://user:pw9@127.0.0.1:1"])
    sys.excepthook(raised.type, raised.value, raised.tb)  # what Python does with the exception main lets through
    err = capsys.readouterr().err
    assert "Traceback" in err and "pw9" not in err and "http://user:***@127.0.0.1:1" in err


def test_the_error_line_masks_a_short_url_password(recipe, monkeypatch, capsys):
    import textdml.cli as cli

    def leaky(config, *args, **kwargs):
        raise ConnectionError(f"cannot reach {config.index.url}")

    monkeypatch.setattr(cli, "run_index", leaky)
    assert main(["index", "--config", recipe, "--model", "m", "index.path=null",
                 "index.url=http://user:pw9@127.0.0.1:1"]) == 2
    line = error_line(capsys, "index")
    assert "pw9" not in line and "user:***@127.0.0.1" in line
