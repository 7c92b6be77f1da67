"""Every index test runs on both engines: Qdrant Edge and qdrant-client's local mode (the stand-in
for a Qdrant server, which cannot be installed here)."""

from __future__ import annotations

import pytest

from tests.fakes import toy_corpus
from textdml.index import open_client

ENGINES = ["edge", "client"]


@pytest.fixture(params=ENGINES)
def engine_kind(request) -> str:
    return request.param


@pytest.fixture
def index_path(tmp_path):
    return tmp_path / "index"


@pytest.fixture
def engine(engine_kind, index_path):
    engine = open_client(path=index_path, engine=engine_kind)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def corpus() -> dict[str, str]:
    """40 toy documents (``d000``..``d039``), each retrievable by its own words."""
    return toy_corpus(num_docs=40)
