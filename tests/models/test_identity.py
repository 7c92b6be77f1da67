from __future__ import annotations

import json

import pytest
import torch

import textdml.models.identity as identity_module
from tests.fakes import HashingEncoder
from textdml.models import Embedder
from textdml.models.identity import ModelIdentity, model_identity, state_dict_sha256


def test_the_model_name_is_its_path_not_a_parameter_name(tiny_model_dir, tmp_path):
    model = Embedder.from_pretrained(tiny_model_dir)
    assert model.name == str(tiny_model_dir)
    model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "textdml_config.json").read_text())
    assert saved["name"] == str(tiny_model_dir)
    assert Embedder.from_pretrained(tmp_path / "saved").identity()["model_name"] == str(tiny_model_dir)


def test_the_hash_is_stored_at_save_and_not_recomputed_on_load(tiny_model_dir, tmp_path, monkeypatch):
    model = Embedder.from_pretrained(tiny_model_dir)
    model.save_pretrained(tmp_path / "saved")
    stored = json.loads((tmp_path / "saved" / "textdml_config.json").read_text())["weights_sha256"]
    reloaded = Embedder.from_pretrained(tmp_path / "saved")
    assert stored == model.weights_sha256() == state_dict_sha256(reloaded.state_dict())

    def no_hashing(state_dict):
        raise AssertionError("re-hashed the weights")

    monkeypatch.setattr(identity_module, "state_dict_sha256", no_hashing)
    assert reloaded.weights_sha256() == stored
    assert reloaded.identity()["weights_sha256"] == stored


def test_a_changed_weight_after_load_changes_the_hash(tiny_model_dir, tmp_path):
    Embedder.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "saved")
    reloaded = Embedder.from_pretrained(tmp_path / "saved")
    before = reloaded.weights_sha256()
    with torch.no_grad():
        reloaded.transformer.embeddings.word_embeddings.weight[1, 1] += 1  # in place: a training step does the same
    assert reloaded.weights_sha256() == state_dict_sha256(reloaded.state_dict()) != before


def test_lora_saves_the_hash_of_the_merged_weights(tiny_model_dir, tmp_path):
    model = Embedder.from_pretrained(tiny_model_dir)
    model.add_lora(r=2, alpha=4, dropout=0.0, target_modules=["query"])
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    model.save_pretrained(tmp_path / "merged")
    stored = json.loads((tmp_path / "merged" / "textdml_config.json").read_text())["weights_sha256"]
    assert stored == state_dict_sha256(Embedder.from_pretrained(tmp_path / "merged").state_dict())


def test_model_identity_gathers_every_field(tiny_embedder):
    identity = model_identity(tiny_embedder)
    assert identity == ModelIdentity(str(tiny_embedder.name), tiny_embedder.weights_sha256(), 32, "cosine", False, {})
    assert identity.short_id == identity.weights_sha256[:8]
    assert ModelIdentity.from_dict(json.loads(identity.to_json())) == identity


def test_differences_name_the_fields():
    a = model_identity(HashingEncoder())
    b = model_identity(HashingEncoder(seed=1, similarity="dot"))
    differences = a.differences(b)
    assert [d.split()[0] for d in differences] == ["weights_sha256", "similarity"]
    moved = ModelIdentity(**{**a.to_dict(), "model_name": "elsewhere/model"})
    assert a.same_vectors(moved) and not a.same_vectors(b)


@pytest.mark.parametrize("field, value", [("embedding_dim", 8), ("normalize", True), ("prompts", {"query": "q: "}),
                                          ("truncate_dim", 8)])
def test_any_vector_changing_field_breaks_sameness(field, value):
    a = model_identity(HashingEncoder())
    assert not a.same_vectors(ModelIdentity(**{**a.to_dict(), field: value}))


def test_a_cut_is_the_same_model_with_other_vectors():
    full, cut = model_identity(HashingEncoder()), model_identity(HashingEncoder(), truncate_dim=8)
    assert (full.vector_size, cut.vector_size) == (16, 8) and "16-d cut to 8" in cut.describe()
    assert cut.same_model(full) and not cut.same_vectors(full)
    assert not cut.same_model(model_identity(HashingEncoder(seed=1), truncate_dim=8))
    old = {key: value for key, value in full.to_dict().items() if key != "truncate_dim"}  # stored before index.dim
    assert ModelIdentity.from_dict(old) == full and ModelIdentity.from_dict(cut.to_dict()) == cut
