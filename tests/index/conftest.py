"""Index-test fixtures; the two engines (``engine``, ``engine_kind``) live in tests/conftest.py."""

from __future__ import annotations

import pytest

from tests.fakes import toy_corpus


@pytest.fixture(scope="session")
def corpus() -> dict[str, str]:
    """40 toy documents (``d000``..``d039``), each retrievable by its own words."""
    return toy_corpus(num_docs=40)
