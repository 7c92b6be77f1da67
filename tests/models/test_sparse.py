"""The sparse (SPLADE) model: its vectors, the SparseEncoder layout both ways, identity, bad folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from textdml.hub.layout import is_sparse_model_folder
from textdml.models.saving import model_kind
from textdml.models.sparse import SparseEmbedder

TEXTS = ["a cat sat on the mat", "a much longer sentence about the weather in spring and autumn", "x", "dogs bark"]


@pytest.fixture
def sparse_model(tiny_mlm_dir):
    return SparseEmbedder.load(tiny_mlm_dir)


def naive_splade(model: SparseEmbedder, text: str) -> torch.Tensor:
    """One text, no padding: log(1 + relu(logits)) max over its tokens."""
    model.eval()
    features = model.tokenizer([text], return_tensors="pt", truncation=True, max_length=model.max_seq_length)
    with torch.no_grad():
        logits = model.transformer(**features).logits[0]  # (L, V)
    return torch.log1p(torch.relu(logits)).max(dim=0).values


def test_forward_is_max_of_log_saturated_relu_over_real_tokens(sparse_model):
    dense = sparse_model.encode(TEXTS, batch_size=2)  # padded batches: padding must not leak in
    assert dense.shape == (len(TEXTS), sparse_model.vocab_size) and (dense >= 0).all()
    for row, text in enumerate(TEXTS):
        np.testing.assert_allclose(dense[row], naive_splade(sparse_model, text).numpy(), atol=1e-5)


def test_encode_sparse_gives_sorted_ids_and_positive_weights(sparse_model):
    dense = sparse_model.encode(TEXTS)
    pairs = sparse_model.encode_sparse(TEXTS, batch_size=3)
    assert len(pairs) == len(TEXTS)
    for row, (ids, weights) in enumerate(pairs):
        assert ids.dtype == np.int64 and weights.dtype == np.float32
        assert (np.diff(ids) > 0).all() and (weights > 0).all()
        assert set(ids.tolist()) == set(np.flatnonzero(dense[row]).tolist())
        np.testing.assert_allclose(weights, dense[row][ids], atol=1e-6)


def test_save_loads_in_sentence_transformers_with_the_same_vectors(sparse_model, tmp_path):
    from sentence_transformers import SparseEncoder

    sparse_model.prompts = {"query": "query: "}
    folder = sparse_model.save(tmp_path / "saved")
    assert is_sparse_model_folder(folder)
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["model_type"] == "SparseEncoder"
    theirs = SparseEncoder(str(folder), device="cpu")
    np.testing.assert_allclose(theirs.encode_document(TEXTS).to_dense().numpy(),
                               sparse_model.encode(TEXTS, kind="document"), atol=1e-5)
    np.testing.assert_allclose(theirs.encode_query(TEXTS).to_dense().numpy(),
                               sparse_model.encode(TEXTS, kind="query"), atol=1e-5)
    reloaded = SparseEmbedder.load(folder)
    assert reloaded.prompts == {"query": "query: "} and reloaded.identity() == sparse_model.identity()
    np.testing.assert_allclose(reloaded.encode(TEXTS, kind="query"), sparse_model.encode(TEXTS, kind="query"),
                               atol=1e-6)


@pytest.mark.parametrize("st_module", ["transformer_fill_mask", "mlm_transformer"])
def test_loads_a_folder_sentence_transformers_saved(tiny_mlm_dir, tmp_path, st_module):
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling

    if st_module == "mlm_transformer":
        first = MLMTransformer(str(tiny_mlm_dir), max_seq_length=64, _from_auto_load=True)
    else:
        first = Transformer(str(tiny_mlm_dir), transformer_task="fill-mask")
    theirs = SparseEncoder(modules=[first, SpladePooling("max", activation_function="log1p_relu")], device="cpu")
    theirs.save(str(tmp_path / "st"))
    ours = SparseEmbedder.load(tmp_path / "st")
    assert ours.activation == "log1p_relu" and ours.pooling_strategy == "max"
    np.testing.assert_allclose(ours.encode(TEXTS), theirs.encode(TEXTS).to_dense().numpy(), atol=1e-5)


def test_plain_encoder_gets_a_tied_mlm_head_with_a_log_line(tiny_model_dir, caplog):
    with caplog.at_level("INFO", logger="textdml.models.sparse"):
        model = SparseEmbedder.from_encoder(tiny_model_dir)
    assert "transform layer starts fresh" in caplog.text
    decoder = model.transformer.get_output_embeddings().weight
    assert decoder.data_ptr() == model.transformer.get_input_embeddings().weight.data_ptr()
    assert model.vocab_size == model.tokenizer.vocab_size and model_kind(model) == "sparse"


def test_minilm_starts_a_sparse_model(minilm_path):
    model = SparseEmbedder.from_encoder(minilm_path)
    [(ids, weights)] = model.encode_sparse(["a cat"], kind="query")
    assert model.vocab_size == 30522 and len(ids) > 0 and model.max_seq_length == 256


def test_identity_vocabulary_and_weights(sparse_model, tiny_mlm_dir):
    identity = sparse_model.identity()
    assert identity["kind"] == "sparse" and identity["model_name"] == str(tiny_mlm_dir)
    assert identity["vocabulary_id"] == SparseEmbedder.load(tiny_mlm_dir).vocabulary_id()
    before = identity["weights_sha256"]
    with torch.no_grad():
        sparse_model.transformer.get_input_embeddings().weight[0, 0] += 1
    assert sparse_model.identity()["weights_sha256"] != before
    sparse_model.tokenizer.add_tokens(["zzqx"])
    sparse_model._vocabulary_id = None
    assert sparse_model.vocabulary_id() != identity["vocabulary_id"]


def test_model_identity_of_a_sparse_model(sparse_model):
    from textdml.models.identity import model_identity

    identity = model_identity(sparse_model)
    assert identity.embedding_dim == sparse_model.vocab_size and identity.similarity == "dot"


def test_a_dense_folder_is_refused_naming_its_kind(tiny_embedder, tmp_path):
    tiny_embedder.save_pretrained(tmp_path / "dense")
    with pytest.raises(ValueError, match=r"dense embedding model .*Pooling.*from_encoder"):
        SparseEmbedder.load(tmp_path / "dense")


def test_a_sparse_folder_is_refused_by_the_dense_embedder(sparse_model, tmp_path):
    from textdml.models import Embedder
    from textdml.models.loading import load_model

    sparse_model.save(tmp_path / "sparse")
    with pytest.raises(ValueError, match="sparse \\(SPLADE\\) model.*SparseEmbedder.load"):
        Embedder.from_pretrained(tmp_path / "sparse")
    assert isinstance(load_model(tmp_path / "sparse"), SparseEmbedder)


def test_unsupported_sparse_modules_are_named(tmp_path, sparse_model):
    folder = sparse_model.save(tmp_path / "sparse")
    modules = json.loads((folder / "modules.json").read_text())
    modules.insert(1, {"idx": 1, "name": "x", "path": "", "type": "sentence_transformers.sparse_encoder.models.SparseAutoEncoder"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match="SparseAutoEncoder"):
        SparseEmbedder.load(folder)
