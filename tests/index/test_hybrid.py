"""Hybrid collections (``index.sparse``): a sparse vector beside the dense one, searched dense, sparse
or fused, on both engines; versions, identity, resume, filters and the errors of bad input."""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import models

from tests.fakes import HashingEncoder, toy_queries
from textdml.index.engine import SPARSE_VECTOR, Fusion, ScoredRecord, SparseSpec
from textdml.index.fusion import weighted_dbsf
from textdml.index.qdrant import evaluate_through_collection, index_documents, open_client, search
from textdml.index.sparse import Bm25Source, SparseSource, load_sparse_source
from textdml.index.versions import format_versions, list_versions

COLLECTION = "docs"


def rows(corpus):
    return [{"id": doc_id, "text": text, "topic": "even" if int(doc_id[1:]) % 2 == 0 else "odd"}
            for doc_id, text in corpus.items()]


def index(engine, corpus, encoder=None, sparse="bm25", **kwargs):
    return index_documents(encoder or HashingEncoder(), rows(corpus), engine, COLLECTION, batch_size=16,
                           show_progress_bar=False, sparse=sparse, **kwargs)


def ids(hits):
    return [hit.doc_id for hit in hits]


class OtherVocabulary(SparseSource):
    """A sparse source whose term ids come from another vocabulary than BM25's hashes."""

    def encode(self, texts, kind, batch_size=32):
        from textdml.index.sparse import as_sparse_values

        return [as_sparse_values([len(word) for word in text.split()], [1.0] * len(text.split())) for text in texts]

    def identity(self):
        return {"kind": "model", "vocabulary": "word-length-v1", "source": "tests/word-length"}

    def describe(self):
        return "sparse model tests/word-length"


def test_a_hybrid_version_stores_a_sparse_vector_and_records_its_source(engine, corpus):
    report = index(engine, corpus)
    info = engine.collection_info(report.version)
    assert info.sparse == {SPARSE_VECTOR: SparseSpec("idf")}  # BM25: the engine weights terms by IDF
    assert info.metadata["sparse"] == Bm25Source().identity()
    assert info.metadata["sparse"]["kind"] == "bm25" and info.points == len(corpus)
    (version,) = list_versions(engine, COLLECTION)
    assert version.sparse == Bm25Source().identity()
    assert "+ BM25 (k=1.2, b=0.75" in format_versions([version])


def test_the_search_modes(engine, corpus):
    index(engine, corpus)
    encoder, text = HashingEncoder(), corpus["d007"]
    dense = search(encoder, engine, COLLECTION, text, top_k=5, mode="dense")[0]
    sparse = search(encoder, engine, COLLECTION, text, top_k=5, mode="sparse")[0]
    hybrid = search(encoder, engine, COLLECTION, text, top_k=5)[0]  # the default on a hybrid collection
    assert dense[0].doc_id == sparse[0].doc_id == hybrid[0].doc_id == "d007"
    assert dense[0].score == pytest.approx(1.0, abs=1e-5)  # cosine of the same text
    assert sparse[0].score > 1.0  # BM25 scores are not cosines
    # RRF (k=2) sums 1 / (k + rank) over the legs, ranks from 0: first in both legs scores 1/2 + 1/2.
    assert hybrid[0].score == pytest.approx(1.0, abs=1e-6)
    assert [hit.score for hit in hybrid] == sorted((hit.score for hit in hybrid), reverse=True)


def test_a_weight_on_one_leg_gives_that_legs_ranking(engine, corpus):
    index(engine, corpus)
    encoder, queries = HashingEncoder(), ["alpha " + corpus["d003"], corpus["d011"] + " " + corpus["d012"]]
    for leg, weights in (("dense", (1.0, 0.0)), ("sparse", (0.0, 1.0))):
        alone = search(encoder, engine, COLLECTION, queries, top_k=5, mode=leg)
        for method in ("rrf", "dbsf"):
            fused = search(encoder, engine, COLLECTION, queries, top_k=5, fusion=Fusion(method, weights))
            for one, other in zip(alone, fused, strict=True):
                scores = [hit.score for hit in one]
                untied = next((i for i in range(1, len(scores)) if scores[i] == scores[i - 1]), len(scores)) - 1
                assert untied >= 1 and ids(one)[:untied] == ids(other)[:untied], (leg, method)


def test_client_side_dbsf_with_equal_weights_is_the_engines_dbsf(engine, corpus):
    index(engine, corpus)
    target = engine.resolve(COLLECTION)
    encoder, texts = HashingEncoder(), [corpus["d005"], "words of d012 " + corpus["d012"]]
    source = Bm25Source()
    vectors, queries = encoder.encode(texts), source.encode(texts, kind="query")
    native = engine.search_hybrid(target, vectors, queries, 10, Fusion("dbsf"))
    dense = engine.search(target, vectors, 100)
    sparse = engine.search_sparse(target, queries, 100)
    for theirs, dense_hits, sparse_hits in zip(native, dense, sparse, strict=True):
        ours = weighted_dbsf([dense_hits, sparse_hits], [1.0, 1.0], 10)
        assert [hit.id for hit in ours] == [hit.id for hit in theirs]
        assert [hit.score for hit in ours] == pytest.approx([hit.score for hit in theirs], rel=1e-4)


def test_weighted_dbsf_scales_each_legs_normalised_scores():
    dense = [ScoredRecord("a", 0.9, {}), ScoredRecord("b", 0.5, {}), ScoredRecord("c", 0.1, {})]
    sparse = [ScoredRecord("c", 9.0, {}), ScoredRecord("b", 1.0, {})]
    # (score - (mean - 3 std)) / (6 std). dense: mean 0.5, std 0.4 -> a 2/3, b 1/2, c 1/3;
    # sparse: mean 5, std sqrt(32) -> c 1/2 + 4 / (6 std), b 1/2 - 4 / (6 std).
    shift = 4 / (6 * 32**0.5)
    fused = {hit.id: hit.score for hit in weighted_dbsf([dense, sparse], [2.0, 1.0], 3)}
    assert fused == pytest.approx({"a": 2 * 2 / 3, "b": 2 * 1 / 2 + 1 / 2 - shift, "c": 2 * 1 / 3 + 1 / 2 + shift})


def test_both_engines_score_the_same_bm25_vectors_alike(tmp_path, corpus):
    queries, _ = toy_queries(corpus)
    scores = []
    for kind in ("edge", "client"):
        with open_client(path=tmp_path / kind, engine=kind) as engine:
            index(engine, corpus)
            found = search(HashingEncoder(), engine, COLLECTION, list(queries.values()), top_k=len(corpus), mode="sparse")
            scores.append([{hit.doc_id: hit.score for hit in hits} for hits in found])
    for edge, client in zip(*scores, strict=True):
        assert edge == pytest.approx(client, rel=1e-4)


def test_filters_apply_to_both_legs(engine, corpus):
    index(engine, corpus)
    even = models.Filter(must=[models.FieldCondition(key="topic", match=models.MatchValue(value="even"))])
    for mode in ("sparse", "hybrid"):
        hits = search(HashingEncoder(), engine, COLLECTION, corpus["d007"], top_k=10, filter=even, mode=mode)[0]
        assert hits and all(hit.payload["topic"] == "even" for hit in hits) and "d007" not in ids(hits)


def test_a_text_of_stop_words_only_is_stored_with_an_empty_sparse_vector(engine, corpus):
    documents = {**corpus, "d999": "the of and"}
    assert index(engine, documents).points == len(documents)
    hits = search(HashingEncoder(), engine, COLLECTION, "the of and", top_k=3, mode="hybrid")[0]
    assert hits[0].doc_id == "d999"  # found by the dense leg alone


def test_sparse_or_hybrid_search_of_a_dense_collection_names_index_sparse(engine, corpus):
    index(engine, corpus, sparse=None)
    assert search(HashingEncoder(), engine, COLLECTION, "x", top_k=1)[0]  # dense: the default there
    for mode in ("sparse", "hybrid"):
        with pytest.raises(ValueError, match=rf"a {mode} search needs sparse vectors.*dense vectors only.*"
                                             r"index\.sparse=bm25"):
            search(HashingEncoder(), engine, COLLECTION, "x", mode=mode)
    with pytest.raises(ValueError, match="must be one of"):
        search(HashingEncoder(), engine, COLLECTION, "x", mode="fused")


def test_a_dense_model_folder_as_index_sparse_names_its_kind(tiny_embedder, tmp_path):
    tiny_embedder.save_pretrained(tmp_path / "dense")
    with pytest.raises(ValueError, match=r"is a dense text embedding model .*not a sparse model.*bm25"):
        load_sparse_source(str(tmp_path / "dense"))


def test_bad_bm25_settings_name_the_key():
    with pytest.raises(ValueError, match=r"index\.bm25 has unknown keys \['kk'\]"):
        load_sparse_source("bm25", {"kk": 1})
    with pytest.raises(ValueError, match=r"index\.bm25 .*unsupported language"):
        load_sparse_source("bm25", {"language": "klingon"})


def test_a_sparse_source_of_another_vocabulary_names_both(engine, corpus):
    index(engine, corpus)
    with pytest.raises(ValueError, match=r"vocabulary 'bm25-hash:english' \(BM25 .*vocabulary 'word-length-v1' "
                                         r"\(sparse model tests/word-length\)"):
        search(HashingEncoder(), engine, COLLECTION, "x", sparse=OtherVocabulary())


def test_other_bm25_settings_are_refused_unless_forced(engine, corpus):
    index(engine, corpus)
    other = Bm25Source(k=2.0)
    with pytest.raises(ValueError, match=r"k 1\.2 vs 2\.0.*--force"):
        search(HashingEncoder(), engine, COLLECTION, "x", sparse=other)
    with pytest.warns(UserWarning, match="--force"):
        assert search(HashingEncoder(), engine, COLLECTION, corpus["d002"], sparse=other, force=True)[0]


def test_an_unfinished_hybrid_version_is_resumed_only_with_its_own_sparse_source(engine, corpus):
    with pytest.raises(RuntimeError, match="simulated crash"):
        index(engine, corpus, encoder=HashingEncoder(fail_after_calls=1))
    (unfinished,) = engine.list_collections()
    dense_only = index(engine, corpus, sparse=None)  # no sparse vectors: a version of its own
    other_bm25 = index(engine, corpus, sparse=Bm25Source(b=0.5))  # other BM25 settings: another version
    assert unfinished not in (dense_only.version, other_bm25.version) and other_bm25.written == len(corpus)
    same = index(engine, corpus)
    assert same.version == unfinished and (same.written, same.skipped) == (len(corpus) - 16, 16)
    assert engine.collection_info(same.version).metadata["status"] == "ready"


def test_in_place_the_sparse_source_must_match(engine, corpus):
    index(engine, corpus, versioned=False)
    assert index(engine, corpus, versioned=False).skipped == len(corpus)  # same source: unchanged points
    with pytest.raises(ValueError, match=r"holds sparse vectors of BM25 \(k=1\.2.*writes BM25 \(k=3\.0.*"
                                         r"same index\.sparse"):
        index(engine, corpus, versioned=False, sparse=Bm25Source(k=3.0))
    with pytest.raises(ValueError, match=r"exists with .*sparse vector 'sparse' \(idf\).*recreate=True"):
        index(engine, corpus, versioned=False, sparse=None)
    assert engine.count(COLLECTION) == len(corpus)  # nothing was deleted


def test_aliases_and_rollback_switch_between_dense_and_hybrid_versions(engine, corpus):
    from textdml.index.versions import rollback

    dense = index(engine, corpus, sparse=None)
    hybrid = index(engine, corpus)
    assert engine.aliases() == {COLLECTION: hybrid.version}
    assert search(HashingEncoder(), engine, COLLECTION, corpus["d001"], mode="sparse")[0][0].doc_id == "d001"
    rollback(engine, COLLECTION)
    assert engine.aliases() == {COLLECTION: dense.version}
    with pytest.raises(ValueError, match="dense vectors only"):
        search(HashingEncoder(), engine, COLLECTION, corpus["d001"], mode="sparse")


def test_evaluation_through_a_hybrid_collection_reports_each_mode_side_by_side(engine, corpus):
    index(engine, corpus)
    queries, relevant = toy_queries(corpus)
    metrics = evaluate_through_collection(HashingEncoder(), engine, COLLECTION, queries, relevant, k_values=(1, 5),
                                          with_index_recall=True)
    for mode in ("dense", "sparse", "hybrid"):
        assert 0.0 <= metrics[f"{mode}_ndcg@10"] <= 1.0 and f"{mode}_recall@5" in metrics
    assert metrics["dense_index_recall@5"] == 1.0  # a small collection is searched exactly
    only_dense = evaluate_through_collection(HashingEncoder(), engine, COLLECTION, queries, relevant, k_values=(1, 5),
                                             modes=["dense"])
    assert only_dense["dense_ndcg@10"] == pytest.approx(metrics["dense_ndcg@10"])
    assert metrics["sparse_ndcg@10"] != metrics["dense_ndcg@10"]  # the legs rank differently


def test_fusion_settings_are_checked():
    with pytest.raises(ValueError, match=r"index\.fusion must be 'rrf' or 'dbsf'"):
        Fusion("sum")
    with pytest.raises(ValueError, match=r"index\.fusion_weights must be two non-negative numbers"):
        Fusion("rrf", (1.0, -1.0))
    with pytest.raises(ValueError, match=r"index\.fusion_weights"):
        Fusion("rrf", (0.0, 0.0))
    assert not Fusion("rrf", (2.0, 2.0)).weighted and Fusion("dbsf", (1.0, 2.0)).weighted


def test_bm25_encodes_documents_and_queries_differently():
    source = Bm25Source()
    (document,), (query,) = source.encode(["cats chase cats"], "document"), source.encode(["cats chase cats"], "query")
    assert np.array_equal(document.indices, query.indices) and len(query.indices) == 2
    assert list(query.values) == [1.0, 1.0] and not np.allclose(document.values, 1.0)
    assert list(document.indices) == sorted(document.indices)


@pytest.fixture
def sparse_model_dir(tiny_mlm_dir, tmp_path):
    from textdml.models.sparse import SparseEmbedder

    return SparseEmbedder.load(tiny_mlm_dir).save(tmp_path / "splade")


def test_a_sparse_model_folder_as_index_sparse(engine, corpus, sparse_model_dir):
    from textdml.models.sparse import SparseEmbedder

    report = index(engine, corpus, sparse=str(sparse_model_dir))
    info = engine.collection_info(report.version)
    model = SparseEmbedder.load(sparse_model_dir)
    assert info.sparse == {SPARSE_VECTOR: SparseSpec("none")}  # learned weights: a plain dot product
    assert info.metadata["sparse"]["vocabulary"] == model.vocabulary_id()
    assert info.metadata["sparse"]["weights_sha256"] == model.weights_sha256()
    # Queries are encoded by the model the collection records; its own text ranks a document first.
    (hits,) = search(HashingEncoder(), engine, COLLECTION, corpus["d004"], top_k=3, mode="sparse")
    assert hits and hits[0].score > 0
    with pytest.raises(ValueError, match=r"vocabulary '[0-9a-f]{64}' \(sparse model .*splade\).*vocabulary "
                                         r"'bm25-hash:english' \(BM25"):
        search(HashingEncoder(), engine, COLLECTION, "x", sparse="bm25")
    other = index(engine, corpus, sparse="bm25")  # another source: a new version, not a resumed one
    assert other.version != report.version and other.written == len(corpus)
