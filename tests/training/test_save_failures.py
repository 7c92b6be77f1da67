"""A checkpoint, best or final save that cannot be written is one clear line naming the folder and
what is left intact, never a half-written checkpoint that resume would take (issue 20)."""

from __future__ import annotations

import shutil
from collections import namedtuple

import pytest
import torch

from tests.cli_checks import write_recipe
from textdml.cli import main
from textdml.training.checkpoint import resolve_checkpoint

TORCH_WRITE_FAILURE = ("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/0: "
                       "file write failed")
Usage = namedtuple("Usage", "total used free")


@pytest.fixture
def recipe(tmp_path, tiny_model_dir):
    return write_recipe(tmp_path, tiny_model_dir, 16, "max_steps: 4, save_steps: 2, batch_size: 4, "
                        "show_progress_bar: false, report_to: none")


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("textdml train: error: "), err
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def fail_torch_save_into(monkeypatch, folder_name: str) -> None:
    """torch.save fails into ``folder_name`` as torch does when a write fails (no errno, no "No space")."""
    real = torch.save

    def save(obj, f, *args, **kwargs):
        if folder_name in str(f):
            raise RuntimeError(TORCH_WRITE_FAILURE)
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def free_space(monkeypatch, free: int) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(1 << 40, (1 << 40) - free, free))


def test_a_failed_checkpoint_write_is_one_line_and_resume_takes_the_last_whole_one(recipe, tmp_path, monkeypatch,
                                                                                  capsys):
    run = tmp_path / "run"
    fail_torch_save_into(monkeypatch, "checkpoint-4")  # after its model.safetensors: half-written
    free_space(monkeypatch, 100 << 30)  # room to spare: a write failure, not a full disk
    assert main(["train", "--config", recipe]) == 2
    line = error_line(capsys)
    assert f"writing the checkpoint '{run / 'checkpoints' / 'checkpoint-4'}' failed (" in line
    assert "PytorchStreamWriter failed writing file" in line
    assert f"the last complete checkpoint '{run / 'checkpoints' / 'checkpoint-2'}' is intact" in line
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["checkpoint-2"]  # no partial left behind
    assert resolve_checkpoint(run, "latest") == run / "checkpoints" / "checkpoint-2"


def test_a_full_disk_during_a_checkpoint_names_the_folder(recipe, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    fail_torch_save_into(monkeypatch, "checkpoint-2")
    free_space(monkeypatch, 1 << 20)  # torch's message has no "No space": the free space says it
    assert main(["train", "--config", recipe]) == 2
    line = error_line(capsys)
    assert f"disk full writing '{run / 'checkpoints' / 'checkpoint-2'}'" in line and "is intact" in line
    assert not list((run / "checkpoints").iterdir())
    assert resolve_checkpoint(run, "latest") is None


def test_a_checkpoint_is_refused_before_writing_when_the_disk_has_no_room_for_it(recipe, tmp_path, monkeypatch,
                                                                                capsys):
    import textdml.training.checkpoint as checkpoint

    run = tmp_path / "run"
    real = checkpoint.save_checkpoint
    saves = {"n": 0}

    def second_save_sees_a_full_disk(*args, **kwargs):
        saves["n"] += 1
        if saves["n"] == 2:
            free_space(monkeypatch, 0)
        return real(*args, **kwargs)

    monkeypatch.setattr("textdml.training.loop.save_checkpoint", second_save_sees_a_full_disk)
    assert main(["train", "--config", recipe]) == 2
    line = error_line(capsys)
    assert f"not enough free space to write checkpoint '{run / 'checkpoints' / 'checkpoint-4'}'" in line
    assert "0.0 MiB free" in line and f"'{run / 'checkpoints' / 'checkpoint-2'}' is intact" in line
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["checkpoint-2"]


def test_a_failed_final_save_is_one_line(recipe, tmp_path, monkeypatch, capsys):
    from pathlib import Path

    from textdml.models.embedder import Embedder

    run = tmp_path / "run"

    def failing_save(self, path, *args, **kwargs):
        (Path(path) / "model.safetensors").write_bytes(b"half")
        raise RuntimeError(TORCH_WRITE_FAILURE)

    monkeypatch.setattr(Embedder, "save_pretrained", failing_save)
    free_space(monkeypatch, 100 << 30)
    assert main(["train", "--config", recipe]) == 2
    line = error_line(capsys)
    assert f"writing the final model '{run / 'final'}' failed (" in line
    assert f"'{run / 'checkpoints' / 'checkpoint-4'}' is intact" in line
    assert not (run / "final").exists() and not list(run.glob(".partial-*"))
