"""textdml.export: the exported folder loads as sentence-transformers reads it, and model.backend
onnx / openvino encodes as the torch model does (float: cosine >= 0.999; int8: > 0.9), tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from textdml.export import export_model, read_manifest
from textdml.models import Embedder

TEXTS = ["a kitten sleeps", "the hound barked at the postman all afternoon", "rain", "she sipped tea slowly",
         "bread was baked in the old stone oven before dawn", "oak"] * 3


def cosines(vectors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return (vectors * reference).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(reference, axis=1)


@pytest.fixture(scope="module")
def source(tmp_path_factory, tiny_model_dir):
    """A saved model with a projection and normalisation, so both must survive the export."""
    embedder = Embedder.from_pretrained(tiny_model_dir, normalize=True, dense_dim=16)
    return embedder.save_pretrained(tmp_path_factory.mktemp("source") / "model")


@pytest.fixture(scope="module")
def torch_vectors(source) -> np.ndarray:
    return Embedder.from_pretrained(source).encode(TEXTS, batch_size=4)


@pytest.fixture(scope="module")
def onnx_export(source, tmp_path_factory):
    return export_model(source, tmp_path_factory.mktemp("exports") / "onnx", "onnx", "int8")


@pytest.fixture(scope="module")
def openvino_export(source, tmp_path_factory):
    return export_model(source, tmp_path_factory.mktemp("exports") / "openvino", "openvino", "int8")


@pytest.mark.parametrize(("backend", "float_file"), [("onnx", "onnx/model.onnx"),
                                                     ("openvino", "openvino/openvino_model.xml")])
def test_the_float_export_encodes_as_the_torch_model(backend, float_file, onnx_export, openvino_export, torch_vectors):
    folder = onnx_export if backend == "onnx" else openvino_export
    model = Embedder.from_pretrained(folder, backend=backend, backend_file=float_file)
    vectors = model.encode(TEXTS, batch_size=4)  # several padded batches
    assert vectors.shape == torch_vectors.shape == (len(TEXTS), 16)
    assert cosines(vectors, torch_vectors).min() >= 0.999
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)  # Normalize kept
    assert model.device.type == "cpu" and model.embedding_dim == 16


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_the_int8_export_is_what_the_backend_loads_and_stays_close(backend, onnx_export, openvino_export,
                                                                   torch_vectors):
    folder = onnx_export if backend == "onnx" else openvino_export
    manifest = read_manifest(folder)
    assert manifest["format"] == backend and manifest["quantize"] == "int8" and "qint8" in manifest["file"]
    model = Embedder.from_pretrained(folder, backend=backend)
    assert model.transformer.file == folder / manifest["file"]
    assert cosines(model.encode(TEXTS, batch_size=4), torch_vectors).min() > 0.9


def test_each_backend_file_is_another_identity(source, onnx_export):
    torch_model = Embedder.from_pretrained(source)
    int8 = Embedder.from_pretrained(onnx_export, backend="onnx")
    float32 = Embedder.from_pretrained(onnx_export, backend="onnx", backend_file="onnx/model.onnx")
    hashes = {torch_model.weights_sha256(), int8.weights_sha256(), float32.weights_sha256()}
    assert len(hashes) == 3  # a collection indexed with one is not silently searched with another
    assert Embedder.from_pretrained(onnx_export, backend="onnx").weights_sha256() == int8.weights_sha256()


def test_the_folder_has_the_layout_sentence_transformers_reads(onnx_export, openvino_export, torch_vectors):
    import onnx
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.backend.utils import backend_should_export

    # Torch: the same model and vectors (pooling, dense, normalisation in modules.json).
    np.testing.assert_allclose(SentenceTransformer(str(onnx_export)).encode(TEXTS), torch_vectors, atol=1e-5)
    # backend="onnx" / "openvino": sentence-transformers finds the files instead of exporting again.
    for folder, name, glob, backend in [(onnx_export, "model.onnx", "*.onnx", "ONNX"),
                                        (openvino_export, "openvino_model.xml", "openvino*.xml", "OpenVINO")]:
        manifest = read_manifest(folder)
        export, kwargs = backend_should_export(folder, True, {}, name, glob, backend)
        assert not export and kwargs == {"subfolder": backend.lower(), "file_name": name}
        export, kwargs = backend_should_export(folder, True, {"file_name": manifest["file"]}, name, glob, backend)
        assert not export and kwargs == {"subfolder": backend.lower(), "file_name": manifest["file"].split("/")[-1]}
    graph = onnx.load(str(onnx_export / "onnx" / "model.onnx")).graph  # the names optimum's ORTModel feeds
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in graph.output] == ["last_hidden_state"]


def test_sentence_transformers_loads_the_export_with_the_onnx_backend(onnx_export, torch_vectors):
    # sentence-transformers runs backend="onnx" through optimum-onnx, which does not install beside
    # transformers 5 (it needs transformers < 4.58): checked wherever it is installed.
    pytest.importorskip("optimum.onnxruntime")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(onnx_export), backend="onnx")
    assert cosines(model.encode(TEXTS), torch_vectors).min() >= 0.999


def test_exporting_again_into_its_own_folder_replaces_it(source, onnx_export, tmp_path):
    out = export_model(source, tmp_path / "again", "onnx")
    before = json.loads((out / "textdml_export.json").read_text())
    assert before["quantize"] is None and before["file"] == "onnx/model.onnx"
    export_model(source, out, "onnx", "int8")  # textdml export's own, unchanged folder: no --force needed
    assert read_manifest(out)["file"] == "onnx/model_qint8_quantized.onnx"
