"""textdml export and model.backend: each bad input is one clear error, and nothing is deleted."""

from __future__ import annotations

import sys

import pytest
from torch import nn

from tests.cli_checks import error_line
from textdml.cli import main
from textdml.config import ConfigError, load_run_config
from textdml.export import export_model
from textdml.export.runtime import load_backend_encoder
from textdml.models import Embedder
from textdml.models.loading import load_model
from textdml.training.setup import check_trainable_backend


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_model_dir):
    return Embedder.from_pretrained(tiny_model_dir).save_pretrained(tmp_path_factory.mktemp("saved") / "model")


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def test_quantize_without_format_is_an_error_and_writes_nothing(saved, tmp_path, capsys):
    assert main(["export", str(saved), "--quantize", "int8", "--output", str(tmp_path / "out")]) == 2
    assert "--quantize int8 needs --format: onnx" in error_line(capsys, "export")
    assert not (tmp_path / "out").exists()


def test_unknown_format_or_quantization_names_the_choices(saved, tmp_path):
    with pytest.raises(ValueError, match="--format 'tflite' is not supported; choose among onnx, openvino"):
        export_model(saved, tmp_path / "out", "tflite")
    with pytest.raises(ValueError, match="--quantize 'int4' is not supported"):
        export_model(saved, tmp_path / "out", "onnx", "int4")
    with pytest.raises(SystemExit):  # the command line offers the choices itself
        main(["export", str(saved), "--format", "tflite", "--output", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_an_image_text_model_is_refused_naming_the_towers(tiny_embedder, tmp_path):
    from textdml.models.dual_encoder import DualEncoder
    from textdml.models.towers.embedder import EmbedderTower
    from textdml.models.towers.module import ModuleTower

    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    folder = DualEncoder(ModuleTower(cnn, output_dim=4, image_size=16), EmbedderTower(tiny_embedder),
                         projection_dim=8).save_pretrained(tmp_path / "dual")
    with pytest.raises(ValueError, match="image-text model: textdml export writes text models only. Neither tower"):
        export_model(folder, tmp_path / "out", "onnx")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="image-text model, which textdml runs in torch only"):
        load_model(folder, backend="onnx")


def test_a_folder_holding_another_model_is_refused_unless_forced(saved, tiny_embedder, tmp_path, capsys):
    other = tiny_embedder.save_pretrained(tmp_path / "other")
    before = snapshot(other)
    assert main(["export", str(saved), "--format", "onnx", "--output", str(other)]) == 2
    line = error_line(capsys, "export")
    assert "was not written by textdml export" in line and "--force" in line
    assert snapshot(other) == before  # nothing deleted or changed
    assert main(["export", str(saved), "--format", "onnx", "--output", str(other), "--force"]) == 0
    assert (other / "onnx" / "model.onnx").exists() and "model.backend=onnx" in capsys.readouterr().out


def test_the_model_folder_itself_is_refused(saved):
    with pytest.raises(ValueError, match="must be a folder apart from the model folder"):
        export_model(saved, saved / "onnx-export", "onnx")


@pytest.mark.parametrize(("fmt", "quantize", "package"), [("onnx", None, "onnxruntime"), ("onnx", None, "onnxscript"),
                                                          ("openvino", None, "openvino"), ("openvino", "int8", "nncf")])
def test_a_missing_backend_package_names_the_extra(saved, tmp_path, monkeypatch, fmt, quantize, package):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else find_spec(name, *a))
    with pytest.raises(ImportError, match=rf"needs {package}, not installed: pip install 'textdml\[export\]'"):
        export_model(saved, tmp_path / "out", fmt, quantize)
    assert not (tmp_path / "out").exists()


def test_a_missing_runtime_names_the_extra(tiny_onnx_export, monkeypatch):
    folder = tiny_onnx_export
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime fails
    with pytest.raises(ImportError, match=r"model.backend=onnx needs the onnxruntime package.*textdml\[export\]"):
        load_backend_encoder(folder, "onnx")


def test_a_folder_without_the_backend_file_says_how_to_export(saved):
    with pytest.raises(FileNotFoundError, match="has no onnx/model.onnx; export it first: textdml export"):
        Embedder.from_pretrained(saved, backend="onnx")


def test_the_backend_config_keys_are_checked(tmp_path, tiny_model_dir):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {{name_or_path: {tiny_model_dir}}}\ntrain: {{path: x.jsonl}}\n")
    with pytest.raises(ConfigError, match="model.backend"):
        load_run_config(recipe, ["model.backend=tflite"])
    with pytest.raises(ConfigError, match="model.backend_file='onnx/model.onnx' names an exported file, but"):
        load_run_config(recipe, ["model.backend_file=onnx/model.onnx"])
    with pytest.raises(ConfigError, match="cannot train: train with model.backend=torch, then `textdml export`"):
        check_trainable_backend(load_run_config(recipe, ["model.backend=onnx"]))


def test_an_exported_encoder_cannot_be_saved(tiny_onnx_export, tmp_path):
    with pytest.raises(ValueError, match="holds no torch weights to save: load the model with model.backend=torch"):
        Embedder.from_pretrained(tiny_onnx_export, backend="onnx").save_pretrained(tmp_path / "copy")
