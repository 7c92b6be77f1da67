"""One float ONNX export of the tiny model, shared by the tests that only read it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_onnx_export(tmp_path_factory, tiny_model_dir):
    from textdml.export import export_model

    return export_model(tiny_model_dir, tmp_path_factory.mktemp("tiny_onnx") / "export", "onnx")
