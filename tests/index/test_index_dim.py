"""``index.dim``: Matryoshka vectors cut and re-normalised into a collection that remembers its size,
and the storage-vs-quality table built from real (temporary) quantized collections."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import HashingEncoder, toy_queries
from textdml.config import IndexConfig
from textdml.evaluation.retrieval import InformationRetrievalEvaluator
from textdml.index import (
    CollectionOptions,
    SearchOptions,
    evaluate_through_collection,
    index_documents,
    list_versions,
    rollback,
    search,
)
from textdml.index.documents import truncate_vectors
from textdml.index.evaluate_index import compare_storage, format_storage_table, vector_bytes
from textdml.index.versions import format_versions

COLLECTION = "docs"


def rows(corpus):
    return [{"id": doc_id, "text": text} for doc_id, text in corpus.items()]


def index(engine, corpus, encoder=None, **kwargs):
    return index_documents(encoder or HashingEncoder(), rows(corpus), engine, COLLECTION, batch_size=16,
                           show_progress_bar=False, **kwargs)


def test_stored_vectors_are_cut_and_unit_length(engine, corpus):
    report = index(engine, corpus, dim=8)
    info = engine.collection_info(report.version)
    assert info.vectors[""].size == 8 and info.metadata["identity"]["truncate_dim"] == 8
    stored = {record.payload["id"]: np.asarray(record.vector) for record in engine.iterate(report.version,
                                                                                         with_vectors=True)}
    assert len(stored) == len(corpus)
    full = HashingEncoder().encode(list(corpus.values()))  # (N, 16), unit length
    expected = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
    vectors = np.stack([stored[doc_id] for doc_id in corpus])
    assert vectors.shape == (len(corpus), 8)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_search_through_a_cut_collection_equals_exact_search_over_cut_vectors(engine, corpus, similarity):
    encoder = HashingEncoder(similarity=similarity)
    index(engine, corpus, encoder=encoder, dim=8)
    queries = ["cat river stone", "bread cheese", "gold silver copper glass"]
    hits = search(encoder, engine, COLLECTION, queries, top_k=5)  # no dim given: the collection knows it
    docs = truncate_vectors(encoder.encode(list(corpus.values())), 8)
    scores = truncate_vectors(encoder.encode(queries), 8) @ docs.T  # (Q, N)
    ids = list(corpus)
    for query_hits, row in zip(hits, scores, strict=True):
        best = np.argsort(-row, kind="stable")[:5]
        assert [hit.doc_id for hit in query_hits] == [ids[i] for i in best]
        assert [hit.score for hit in query_hits] == pytest.approx(row[best].tolist(), abs=1e-5)


def test_evaluation_through_a_cut_collection_equals_the_evaluators_truncated_metrics(engine, corpus):
    queries, relevant = toy_queries(corpus, num_queries=15)
    index(engine, corpus, dim=8)
    through_index = evaluate_through_collection(HashingEncoder(), engine, COLLECTION, queries, relevant)
    exact = InformationRetrievalEvaluator(queries, corpus, relevant, truncate_dims=[8])(HashingEncoder())
    assert through_index == pytest.approx({key.removeprefix("dim8_"): value for key, value in exact.items()
                                           if key.startswith("dim8_")}, abs=1e-6)


@pytest.mark.parametrize("dim, message", [
    (0, r"index.dim \(dim=\) must be a whole number of coordinates >= 1, got 0"),
    (-4, r"must be a whole number of coordinates >= 1, got -4"),
    (17, r"index.dim \(dim=\)=17 is larger than the model's embedding size 16.*1..16"),
])
def test_bad_dims_are_errors_naming_both_numbers(engine, corpus, dim, message):
    with pytest.raises(ValueError, match=message):
        index(engine, corpus, dim=dim)
    assert engine.list_collections() == []


def test_a_config_dim_below_one_is_an_error():
    from textdml.config import ConfigError, load_run_config

    with pytest.raises(ConfigError, match=r"index.dim must be >= 1, got 0 \(null stores the full vectors\)"):
        load_run_config(None, ["train.path=x.jsonl", "index.dim=0"])


def test_searching_with_a_model_of_another_size_names_both_sizes(engine, corpus):
    index(engine, corpus, dim=8)
    with pytest.raises(ValueError, match=r"holds the first 8 coordinates of 16-d vectors \(index.dim=8\), but the "
                                         r"model writes 4-d vectors"):
        search(HashingEncoder(embedding_dim=4), engine, COLLECTION, "cat")
    with pytest.raises(ValueError, match=r"16-d cut to 8.*12-d cut to 8.*embedding_dim 12 vs 16"):
        search(HashingEncoder(embedding_dim=12), engine, COLLECTION, "cat")


def test_searching_with_another_index_dim_is_an_error_not_ignored(engine, corpus):
    index(engine, corpus, dim=8)
    assert search(HashingEncoder(), engine, COLLECTION, "cat", expected_dim=8)[0]  # the same size: fine
    with pytest.raises(ValueError, match=r"index.dim=4, but collection 'docs' .* holds 8-d vectors.*drop index.dim"):
        search(HashingEncoder(), engine, COLLECTION, "cat", expected_dim=4)


def test_a_new_version_may_change_dim_and_search_follows_the_live_one(engine, corpus):
    full = index(engine, corpus)
    cut = index(engine, corpus, dim=4)  # same model, other size: allowed, it is a new version
    assert engine.aliases() == {COLLECTION: cut.version} and engine.collection_info(cut.version).vectors[""].size == 4
    assert "16-d cut to 4" in format_versions(list_versions(engine, COLLECTION))
    text = corpus["d007"]
    assert search(HashingEncoder(), engine, COLLECTION, text, top_k=1)[0][0].doc_id == "d007"
    rollback(engine, COLLECTION)
    assert engine.aliases() == {COLLECTION: full.version}
    hit = search(HashingEncoder(), engine, COLLECTION, text, top_k=1)[0][0]
    assert hit.doc_id == "d007" and hit.score == pytest.approx(1.0, abs=1e-5)
    other = index(engine, corpus, encoder=HashingEncoder(seed=2, embedding_dim=8), dim=4)  # another model: fine too
    assert engine.aliases() == {COLLECTION: other.version}


def test_an_unfinished_version_is_resumed_only_at_its_own_dim(engine, corpus):
    with pytest.raises(RuntimeError, match="simulated crash"):
        index(engine, corpus, encoder=HashingEncoder(fail_after_calls=1), dim=8)
    (unfinished,) = engine.list_collections()
    other = index(engine, corpus)  # full size: a version of its own, the cut one is not resumed
    assert other.version != unfinished and other.written == len(corpus)
    same = index(engine, corpus, dim=8)
    assert same.version == unfinished and (same.written, same.skipped) == (len(corpus) - 16, 16)


def test_in_place_the_dim_is_part_of_the_vectors_identity(engine, corpus):
    index(engine, corpus, versioned=False)
    with pytest.raises(ValueError, match=r"truncate_dim 16 vs None.*--force"):  # same size, other vectors
        index(engine, corpus, versioned=False, dim=16)
    with pytest.raises(ValueError, match=r"exists with size=16, distance=cosine.*needs size=8"):
        index(engine, corpus, versioned=False, dim=8)


def test_vector_bytes_fall_with_size_and_quantization():
    assert [vector_bytes(384, q) for q in ("none", "scalar", "product", "binary")] == [1536, 384, 96, 48]
    assert vector_bytes(100, "binary") == 13 and vector_bytes(1, "none") == 4


@pytest.fixture
def evaluator(corpus):
    queries, relevant = toy_queries(corpus, num_queries=15)
    return InformationRetrievalEvaluator(queries, corpus, relevant)


def index_config(engine_kind, tmp_path, **kwargs):
    return IndexConfig(path=str(tmp_path / "unused"), engine=engine_kind, **kwargs)


def test_storage_table_has_a_row_per_combination_from_real_collections(engine_kind, evaluator, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the temporary collections go
    encoder = HashingEncoder()
    config = index_config(engine_kind, tmp_path)
    warns = (pytest.warns(UserWarning, match="ignores HNSW and quantization") if engine_kind == "client"
             else contextlib.nullcontext())
    with warns:
        table = compare_storage(encoder, evaluator, config, dims=[16, 8, 4], quantizations=["none", "scalar", "binary"])
    assert [(row.dim, row.quantization) for row in table] == [
        (d, q) for d in (16, 8, 4) for q in ("none", "scalar", "binary")]
    assert [row.bytes_per_vector for row in table] == [64, 16, 2, 32, 8, 1, 16, 4, 1]
    full = dict(table[0].metrics)
    assert [full.pop(f"index_recall@{k}") for k in (1, 5, 10)] == pytest.approx([1.0, 1.0, 1.0])
    assert full == pytest.approx(evaluator(HashingEncoder()), abs=1e-6)  # as the plain evaluator
    cut = InformationRetrievalEvaluator(dict(zip(evaluator.query_ids, evaluator.queries)), dict(
        zip(evaluator.corpus_ids, evaluator.corpus)), evaluator.relevant_docs, truncate_dims=[8])(HashingEncoder())
    assert table[3].metrics["ndcg@10"] == pytest.approx(cut["dim8_ndcg@10"], abs=1e-6)
    assert table[6].metrics["index_recall@10"] < 1.0  # 4 of 16 coordinates lose some of the exact top 10
    assert encoder.texts_encoded == len(evaluator.corpus) + len(evaluator.queries)  # encoded once for all rows
    assert list(tmp_path.iterdir()) == []  # the temporary collections are gone (and "unused" never made)
    printed = format_storage_table(table).splitlines()
    assert printed[0].split() == ["dim", "quantization", "bytes/vector", "ndcg@10", "recall@10", "mrr@10",
                                  "vs", "exact@10"]
    assert len(printed) == 1 + 9 and printed[1].split()[:3] == ["16", "none", "64"]


def test_quantization_in_the_table_is_real_not_simulated(evaluator, tmp_path):
    # Without rescoring, Edge returns binary-code scores: they differ from the float scores.
    config = index_config("edge", tmp_path, rescore=False)
    none, binary = compare_storage(HashingEncoder(), evaluator, config, quantizations=["none", "binary"])
    assert none.metrics["index_recall@10"] == pytest.approx(1.0)
    assert binary.metrics != none.metrics


def test_binary_quantized_edge_collections_score_with_codes_until_rescored(tmp_path, corpus):
    from textdml.index import open_client

    with open_client(path=tmp_path / "index") as engine:
        report = index(engine, corpus, options=CollectionOptions(quantization="binary", hnsw_threshold=0))
        assert report.hnsw_built
        text = corpus["d003"]
        raw = search(HashingEncoder(), engine, COLLECTION, text, top_k=3, options=SearchOptions(rescore=False))
        rescored = search(HashingEncoder(), engine, COLLECTION, text, top_k=3)
    assert rescored[0][0].score == pytest.approx(1.0, abs=1e-5)
    assert abs(raw[0][0].score - 1.0) > 1e-3


@pytest.mark.parametrize("kwargs, message", [
    ({"dims": [17]}, r"--dims \(dims=\)=17 is larger than the model's embedding size 16"),
    ({"dims": [0]}, r"--dims \(dims=\) must be a whole number of coordinates >= 1, got 0"),
    ({"quantizations": []}, r"--quantizations \(quantizations=\) is empty"),
    ({"quantizations": ["int4"]}, r"index.quantization must be one of none, scalar, binary, product; got 'int4'"),
])
def test_storage_table_bad_settings_are_errors(evaluator, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compare_storage(HashingEncoder(), evaluator, index_config("edge", tmp_path), **kwargs)
    assert not Path(tmp_path / "unused").exists()


def test_storage_table_needs_a_retrieval_evaluation(tmp_path):
    with pytest.raises(ValueError, match=r"storage table .* needs a retrieval evaluation .* gives a object"):
        compare_storage(HashingEncoder(), object(), index_config("edge", tmp_path))
