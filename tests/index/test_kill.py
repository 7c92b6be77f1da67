"""``kill -9`` in the middle of indexing and of alias swaps: counted and checked after."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.fakes import HashingEncoder
from textdml.index import index_documents, list_versions, open_client

NUM_DOCS = {"edge": 3000, "client": 200}  # qdrant-client's local mode writes ~150 points/s

INDEXER = textwrap.dedent("""
    import sys
    from tests.fakes import HashingEncoder
    from textdml.index import index_documents, open_client

    path, kind, num_docs, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    def documents():
        for i in range(num_docs):
            if i == kill_at:
                print("killable", flush=True)
            yield {"id": f"doc-{i}", "text": f"document number {i} about {'cats' if i % 2 else 'dogs'} {i % 17}"}

    index_documents(HashingEncoder(), documents(), open_client(path=path, engine=kind), "docs", batch_size=50,
                    show_progress_bar=False)
    print("finished", flush=True)
""")


def all_documents(num_docs):
    return [{"id": f"doc-{i}", "text": f"document number {i} about {'cats' if i % 2 else 'dogs'} {i % 17}"}
            for i in range(num_docs)]


@pytest.mark.parametrize("kind", ["edge", "client"])
def test_kill_9_while_indexing_then_rerun_has_every_document_once(tmp_path, kind):
    path, num_docs = tmp_path / "index", NUM_DOCS[kind]
    child = subprocess.Popen([sys.executable, "-c", INDEXER, str(path), kind, str(num_docs), str(num_docs // 2)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "killable"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with open_client(path=path, engine=kind) as engine:
        (version,) = engine.list_collections()
        assert engine.aliases() == {}  # the half-written version never went live
        stored_before = engine.count(version)
        assert 0 < stored_before < num_docs
        report = index_documents(HashingEncoder(), all_documents(num_docs), engine, "docs", batch_size=50,
                                 show_progress_bar=False)
        assert report.version == version and report.skipped == stored_before
        assert engine.aliases() == {"docs": version}
        ids = [record.payload["id"] for record in engine.iterate(version)]
        assert len(ids) == num_docs and set(ids) == {f"doc-{i}" for i in range(num_docs)}
        assert [v.status for v in list_versions(engine, "docs")] == ["ready"]


SWAPPER = textwrap.dedent("""
    import sys
    from textdml.index import open_client

    engine = open_client(path=sys.argv[1], engine=sys.argv[2])
    first, second = sys.argv[3], sys.argv[4]
    engine.set_alias("docs", first)
    print("swapping", flush=True)
    while True:
        engine.set_alias("docs", second)
        engine.set_alias("docs", first)
""")


@pytest.mark.parametrize("kind", ["edge", "client"])
def test_kill_9_during_alias_swaps_leaves_the_old_or_the_new_version(tmp_path, kind):
    path = tmp_path / "index"
    with open_client(path=path, engine=kind) as engine:
        first = index_documents(HashingEncoder(), all_documents(20), engine, "docs", show_progress_bar=False).version
        time.sleep(0.002)  # version names carry the millisecond
        second = index_documents(HashingEncoder(), all_documents(10), engine, "docs", show_progress_bar=False).version
    for delay in (0.05, 0.3):
        child = subprocess.Popen([sys.executable, "-c", SWAPPER, str(path), kind, first, second],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "swapping"
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        with open_client(path=path, engine=kind) as engine:
            live = engine.aliases().get("docs")
            assert live in (first, second)
            assert engine.count(engine.resolve("docs")) == (20 if live == first else 10)
