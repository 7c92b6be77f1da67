"""textdml.models.saving: the saved folder's file names, the model-kind test, one save and one push."""

from __future__ import annotations

import json

import pytest
from torch import nn

import textdml.models.saving as saving
from textdml.models.dual_encoder import DualEncoder
from textdml.models.saving import (
    DUAL_ENCODER_CONFIG,
    DUAL_ENCODER_HEAD,
    MODULES,
    ST_CONFIG,
    TEXTDML_CONFIG,
    is_adapter_save,
    is_image_text,
    is_saved_model,
    model_kind,
    save_model,
)
from textdml.models.towers.embedder import EmbedderTower
from textdml.models.towers.module import ModuleTower


@pytest.fixture
def tiny_dual_encoder(tiny_embedder) -> DualEncoder:
    """A small CNN image tower beside the tiny text embedder: no download, built in well under a second."""
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return DualEncoder(ModuleTower(cnn, output_dim=4, image_size=16), EmbedderTower(tiny_embedder), projection_dim=8)


def test_model_kind_tells_text_from_image_text(tiny_embedder, tiny_dual_encoder):
    assert model_kind(tiny_embedder) == "text" and not is_image_text(tiny_embedder)
    assert model_kind(tiny_dual_encoder) == "image_text" and is_image_text(tiny_dual_encoder)


def test_a_saved_text_model_is_written_with_the_named_files(tiny_embedder, tmp_path):
    folder = save_model(tiny_embedder, tmp_path / "text")
    assert all((folder / name).exists() for name in (MODULES, ST_CONFIG, TEXTDML_CONFIG))
    assert is_saved_model(folder) and not is_adapter_save(folder)


def test_a_saved_dual_encoder_is_written_with_the_named_files(tiny_dual_encoder, tmp_path):
    folder = save_model(tiny_dual_encoder, tmp_path / "dual")
    assert json.loads((folder / DUAL_ENCODER_CONFIG).read_text())["textdml_dual_encoder"] == 1
    assert (folder / DUAL_ENCODER_HEAD).exists()  # the image projection
    assert is_saved_model(folder)


def test_folders_without_a_model_are_not_saved_models(tiny_embedder, tmp_path):
    assert not is_saved_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert not is_saved_model(tmp_path / "empty")
    run = tmp_path / "run"
    save_model(tiny_embedder, run / "final")
    assert not is_saved_model(run)  # a run folder holds a model one level down
    assert is_saved_model(run / "final")


def test_every_push_of_a_model_object_goes_through_push_model(tiny_embedder, tiny_dual_encoder, monkeypatch,
                                                              tmp_path):
    pushed = []

    def fake_push_to_hub(folder, repo_id, **kwargs):  # the folder push: record what push_model saved
        pushed.append((repo_id, sorted(p.name for p in folder.iterdir()), kwargs))
        return "pushed"

    monkeypatch.setattr(saving, "push_to_hub", fake_push_to_hub)
    assert tiny_embedder.push_to_hub("alice/text", private=True) == "pushed"
    assert tiny_dual_encoder.push_to_hub("alice/dual") == "pushed"
    assert [repo for repo, _, _ in pushed] == ["alice/text", "alice/dual"]
    assert MODULES in pushed[0][1] and pushed[0][2] == {"private": True}
    assert DUAL_ENCODER_CONFIG in pushed[1][1]
    with pytest.raises(ValueError, match="namespace/name"):
        tiny_embedder.push_to_hub("no-namespace")
    with pytest.raises(ValueError, match="needs staging_dir"):
        tiny_dual_encoder.push_to_hub("alice/dual", dry_run=True)


def test_old_import_paths_still_work():
    import textdml.hub.push as hub_push
    import textdml.models.adapters as adapters

    assert adapters.save_model is save_model and hub_push.push_model is saving.push_model
    assert adapters.has_adapters is saving.has_adapters and adapters.is_dual_adapter_folder is saving.is_dual_adapter_folder
