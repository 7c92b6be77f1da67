"""A new version must fit on its disk (checked before writing: Qdrant Edge dies of SIGBUS on a full
one), and folders that killed runs left are cleaned up by the next writer."""

from __future__ import annotations

import json
import shutil
from collections import namedtuple

import pytest

from tests.fakes import HashingEncoder
from textdml.index import index_documents, list_versions, open_client
from textdml.index.disk import MiB, estimate_bytes

Usage = namedtuple("Usage", "total used free")


def rows(corpus):
    return [{"id": doc_id, "text": text} for doc_id, text in corpus.items()]


def index(engine, documents, **kwargs):
    return index_documents(HashingEncoder(), documents, engine, "docs", batch_size=16, show_progress_bar=False,
                           **kwargs)


def fill_disk(monkeypatch, free_bytes: int) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**12, 10**12 - free_bytes, free_bytes))


def test_the_estimate_grows_with_points_and_size():
    assert estimate_bytes(None, 384) == estimate_bytes(0, 384) == 100 * MiB
    assert estimate_bytes(1000, 768) - estimate_bytes(1000, 384) == 1000 * 384 * 4 * 2


@pytest.mark.parametrize("versioned", [True, False])
def test_a_full_disk_is_an_error_before_anything_is_written(engine, corpus, index_path, monkeypatch, versioned):
    first = index(engine, rows(corpus)) if versioned else None
    before = engine.list_collections()
    fill_disk(monkeypatch, 20 * MiB)
    with pytest.raises(ValueError, match=rf"not enough disk space for a new version in '{index_path}': about "
                                         rf"100 MiB needed \(40 points of 16 float32 coordinates.*20 MiB free.*index.path"):
        index_documents(HashingEncoder(), rows(corpus), engine, "docs" if versioned else "plain",
                        show_progress_bar=False, versioned=versioned)
    assert engine.list_collections() == before  # no version, no folder
    if versioned:
        assert engine.aliases() == {"docs": first.version}


def test_a_disk_with_room_goes_on(engine, corpus, monkeypatch):
    fill_disk(monkeypatch, 200 * MiB)
    assert index(engine, rows(corpus)).points == len(corpus)


def test_the_next_writer_removes_folders_killed_runs_left(corpus, tmp_path):
    path = tmp_path / "index"
    with open_client(path=path, engine="edge") as engine:
        first = index(engine, rows(corpus))
        building = index_documents(HashingEncoder(seed=3), rows(corpus), engine, "docs", show_progress_bar=False,
                                   swap=False).version  # another model's: the next run does not resume it
        meta = json.loads((path / building / "textdml.json").read_text())
        (path / building / "textdml.json").write_text(json.dumps({**meta, "status": "building"}))
    half = path / "docs__deadbeef__20261201T224501123"  # died between creating the shard and its metadata
    (half / "wal").mkdir(parents=True)
    (half / "wal" / "open-1").write_bytes(b"\0" * 64)
    trash = path / ".deleting-docs__0badcafe__20261130T101010101-4242"  # a delete killed mid-way
    trash.mkdir()
    (trash / "edge_config.json").write_text("{}")
    keep = path / "notes"  # not textdml's: never touched
    keep.mkdir()
    with open_client(path=path, engine="edge") as engine:
        index(engine, rows(corpus))
        assert not half.exists() and not trash.exists() and keep.exists()
        names = [v.name for v in list_versions(engine, "docs")]
        assert first.version in names and building in names  # a listed unfinished version stays: it can resume
        assert [v.status for v in list_versions(engine, "docs") if v.name == building] == ["building"]


def test_a_full_disk_through_the_cli_is_one_line(tmp_path, tiny_model_dir, monkeypatch, capsys):
    from textdml.cli import main

    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document {i}"}) + "\n" for i in range(6)))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"train: {{path: {docs}}}\nindex: {{collection: docs, path: {tmp_path / 'idx'}}}\n")
    fill_disk(monkeypatch, 5 * MiB)
    assert main(["index", "--config", str(recipe), "--model", str(tiny_model_dir), "--data", str(docs)]) == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert line.startswith("textdml index: error: not enough disk space for a new version in ") and "Traceback" not in err
    assert "5 MiB free" in line and "point index.path at a disk with room" in line
    assert [p.name for p in (tmp_path / "idx").iterdir() if not p.name.startswith(".")] == ["textdml_index.json"]
