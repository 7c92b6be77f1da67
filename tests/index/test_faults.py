"""Bad input and faults: locked indexes, unreachable servers, API keys in clear, mistyped paths."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import warnings

import pytest

from tests.fakes import HashingEncoder, toy_corpus
from textdml.index import client as client_module
from textdml.index import index_documents, open_client, search
from textdml.index.client import ClientEngine, warn_if_key_in_clear
from textdml.index.engine import IndexLockedError


def rows(num_docs=30):
    return [{"id": doc_id, "text": text} for doc_id, text in toy_corpus(num_docs=num_docs).items()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_server_is_an_error_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ValueError, match=f"the Qdrant server at {url} is not reachable"):
        open_client(url=url, timeout=1)


def test_the_url_password_is_never_in_the_error():
    port = free_port()
    with pytest.raises(ValueError, match=rf"the Qdrant server at http://me:\*\*\*@127.0.0.1:{port} is not") as raised:
        open_client(url=f"http://me:pw9@127.0.0.1:{port}", timeout=1)
    assert "pw9" not in str(raised.value)


def test_a_server_that_never_answers_times_out_instead_of_hanging():
    with socket.socket() as silent:  # accepts connections, never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(ValueError, match=f"server at {url} is not reachable"):
            open_client(url=url, timeout=1)


@pytest.mark.parametrize("url, warns", [("http://qdrant.example.com:6333", True), ("https://qdrant.example.com", False),
                                        ("http://localhost:6333", False), ("http://127.0.0.1:6333", False)])
def test_an_api_key_over_plain_http_to_another_host_warns(url, warns):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_if_key_in_clear(url, "secret")
    assert bool([w for w in caught if "plain http" in str(w.message)]) is warns
    assert "secret" not in " ".join(str(w.message) for w in caught)


def test_the_api_key_comes_from_the_environment_and_is_never_shown(monkeypatch):
    seen = {}

    class FakeClient:
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def get_collections(self):
            return None

    monkeypatch.setattr(client_module, "QdrantClient", FakeClient)
    monkeypatch.setenv("QDRANT_API_KEY", "s3cret-from-env")
    engine = ClientEngine(url="https://qdrant.example.com")
    assert seen["api_key"] == "s3cret-from-env" and "s3cret" not in repr(engine) + engine.location


@pytest.mark.parametrize("kind", ["edge", "client"])
def test_opening_for_search_never_creates_a_folder(tmp_path, kind):
    open_client(path=tmp_path / "vectors", engine=kind).close()
    missing = tmp_path / "vectros"
    with pytest.raises(ValueError, match=r"index.path .*vectros' does not exist.*'vectors'"):
        open_client(path=missing, engine=kind, create=False)
    assert not missing.exists()


def test_an_edge_index_is_not_opened_on_a_foreign_folder(tmp_path):
    open_client(path=tmp_path / "local", engine="client").close()
    with pytest.raises(ValueError, match="qdrant-client local-mode store.*index.engine=client"):
        open_client(path=tmp_path / "local", engine="edge")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and is no textdml Edge index"):
        open_client(path=tmp_path / "other")
    assert open_client(path=tmp_path / "local").kind == "client"  # detected


HOLDER = textwrap.dedent("""
    import sys, time
    from tests.fakes import HashingEncoder
    from textdml.index import open_client, search
    engine = open_client(path=sys.argv[1])
    search(HashingEncoder(), engine, "docs", "cat")  # opens (and so locks) the live shard
    with engine.writing():
        print("holding", flush=True)
        time.sleep(60)
""")


def test_a_second_edge_process_gets_a_clear_locked_error(index_path):
    with open_client(path=index_path) as engine:
        index_documents(HashingEncoder(), rows(), engine, "docs", show_progress_bar=False)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(index_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        engine = open_client(path=index_path)
        with pytest.raises(IndexLockedError, match="locked: another process is writing"):
            index_documents(HashingEncoder(), rows(), engine, "docs", show_progress_bar=False)
        with pytest.raises(IndexLockedError, match="collection 'docs__.*' .* is locked: another process has it open"):
            search(HashingEncoder(), engine, "docs", "cat")
        engine.close()
    finally:
        holder.kill()
        holder.wait()
    with open_client(path=index_path) as engine:  # nothing was corrupted
        assert len(engine.list_collections()) == 1 and engine.count(engine.resolve("docs")) == 30
        assert index_documents(HashingEncoder(), rows(), engine, "docs", show_progress_bar=False).points == 30


READER = textwrap.dedent("""
    import sys, time
    from tests.fakes import HashingEncoder
    from textdml.index import open_client, search
    engine = open_client(path=sys.argv[1], create=False)
    search(HashingEncoder(), engine, "docs", "cat")  # the live shard stays open in this process
    print("reading", flush=True)
    time.sleep(60)
""")


def test_a_new_version_is_written_while_another_process_reads_the_live_one(index_path):
    with open_client(path=index_path) as engine:
        first = index_documents(HashingEncoder(), rows(), engine, "docs", show_progress_bar=False).version
    reader = subprocess.Popen([sys.executable, "-c", READER, str(index_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "reading"
        with open_client(path=index_path) as engine:
            second = index_documents(HashingEncoder(), rows(12), engine, "docs", show_progress_bar=False)
            assert second.replaced == first and engine.aliases() == {"docs": second.version}
    finally:
        reader.kill()
        reader.wait()
