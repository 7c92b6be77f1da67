"""A fine-tuned model is named by its folder and "fine-tuned from <base>", not by its base alone (issue 20)."""

from __future__ import annotations

import pytest

from tests.fakes import HashingEncoder
from textdml.index import index_documents, search
from textdml.index.versions import format_versions, list_versions
from textdml.models import Embedder
from textdml.models.identity import ModelIdentity, model_identity


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory, tiny_model_dir) -> str:
    """A textdml save of a model "trained from" org/base: its textdml_config names the base."""
    model = Embedder.from_pretrained(tiny_model_dir)
    model.name = "org/base"
    return str(model.save_pretrained(tmp_path_factory.mktemp("runs") / "final"))


def test_a_fine_tuned_folder_is_named_by_its_folder_and_its_base(fine_tuned):
    identity = model_identity(Embedder.from_pretrained(fine_tuned))
    assert identity.model_name == "org/base"  # payloads and cards keep the base
    assert identity.describe().startswith(f"{fine_tuned} (fine-tuned from org/base; sha256 ")


def test_a_base_model_loaded_by_its_path_has_no_base(tiny_model_dir):
    identity = model_identity(Embedder.from_pretrained(tiny_model_dir))
    assert identity.source is None and "fine-tuned" not in identity.describe()


def test_the_source_never_decides_whether_vectors_agree(fine_tuned, tmp_path):
    a = ModelIdentity("org/base", "ab" * 32, 8, "cosine", source=fine_tuned)
    b = ModelIdentity("org/base", "ab" * 32, 8, "cosine", source=str(tmp_path / "moved"))
    assert a.same_vectors(b) and a.differences(b) == []
    assert "source" not in ModelIdentity("org/base", "ab" * 32, 8, "cosine").to_dict()  # old metadata unchanged
    assert ModelIdentity.from_dict(a.to_dict()) == a


def test_versions_and_errors_name_the_fine_tuned_folder(fine_tuned, engine):
    model = Embedder.from_pretrained(fine_tuned)
    docs = [{"id": "a", "text": "a cat"}, {"id": "b", "text": "a dog"}]
    index_documents(model, docs, engine, "docs", show_progress_bar=False)
    assert f"{fine_tuned} (fine-tuned from org/base; sha256" in format_versions(list_versions(engine, "docs"))
    with pytest.raises(ValueError, match=rf"indexed by {fine_tuned} \(fine-tuned from org/base; sha256 "):
        search(HashingEncoder(embedding_dim=32), engine, "docs", "cat")
