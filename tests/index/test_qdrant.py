from __future__ import annotations

import datasets
import pytest

from tests.fakes import HashingEncoder, toy_queries
from textdml.evaluation.retrieval import InformationRetrievalEvaluator
from textdml.index.qdrant import (
    MODEL_HASH_KEY,
    SearchHit,
    ensure_collection,
    evaluate_through_collection,
    index_documents,
    open_client,
    point_id,
    search,
)

COLLECTION = "docs"


def rows(corpus):
    return [{"id": doc_id, "text": text, "source": "toy"} for doc_id, text in corpus.items()]


def count(engine, name=COLLECTION):
    return engine.count(engine.resolve(name))


def index(engine, documents, encoder=None, **kwargs):
    kwargs.setdefault("versioned", False)
    return index_documents(encoder or HashingEncoder(), documents, engine, COLLECTION, batch_size=16,
                           show_progress_bar=False, **kwargs)


def test_open_client_needs_exactly_one_location(tmp_path):
    with pytest.raises(ValueError, match="exactly one of path= .* or url="):
        open_client()
    with pytest.raises(ValueError, match="exactly one"):
        open_client(path=tmp_path, url="http://localhost:6333")
    with pytest.raises(ValueError, match="api_key"):
        open_client(path=tmp_path, api_key="secret")


def test_the_default_engine_is_edge(tmp_path):
    engine = open_client(path=tmp_path / "vectors")
    assert engine.kind == "edge" and (tmp_path / "vectors" / "textdml_index.json").exists()
    engine.close()


def test_point_id_is_a_deterministic_uuid():
    assert point_id("d001") == point_id("d001") != point_id("d002")
    assert point_id(7) == point_id("7")
    assert len(point_id("d001")) == 36


def test_point_id_is_uuid5_of_the_document_id_forever():
    # Every point id ever written: a change would give each document a second point on re-index.
    import uuid

    from textdml.index.documents import POINT_ID_NAMESPACE

    ids = ["d001", "", "naïve 🐈", "a" * 1000, 0, 7, -3, 2**70, 1.5, "\x00\n"] + [f"doc-{i}" for i in range(2000)]
    assert [point_id(i) for i in ids] == [str(uuid.uuid5(POINT_ID_NAMESPACE, str(i))) for i in ids]
    assert POINT_ID_NAMESPACE == uuid.UUID("5b1f3a52-6f0e-4c55-9a4e-2d7c1f0b9e61")


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_ensure_collection_creates_with_the_model_distance(engine, similarity):
    assert ensure_collection(engine, COLLECTION, 16, similarity) is True
    assert engine.collection_info(COLLECTION).vectors[""].describe() == f"size=16, distance={similarity}"
    assert ensure_collection(engine, COLLECTION, 16, similarity) is False


@pytest.mark.parametrize("encoder", [HashingEncoder(embedding_dim=8), HashingEncoder(similarity="dot")],
                         ids=["size", "distance"])
def test_mismatch_is_an_error_and_keeps_the_points(engine, corpus, encoder):
    index(engine, rows(corpus))
    with pytest.raises(ValueError, match=r"exists with size=16, distance=cosine.*needs size=.*recreate=True"):
        index(engine, rows(corpus), encoder=encoder)
    assert count(engine) == len(corpus)


def test_recreate_replaces_the_collection(engine, corpus):
    index(engine, rows(corpus))
    dot_encoder = HashingEncoder(embedding_dim=8, similarity="dot")
    assert index(engine, rows(corpus)[:5], encoder=dot_encoder, recreate=True).written == 5
    assert engine.collection_info(COLLECTION).vectors[""].describe() == "size=8, distance=dot"
    assert count(engine) == 5


def test_rerun_in_place_is_idempotent_and_skips_encoding(engine, corpus):
    assert index(engine, rows(corpus)).written == len(corpus)
    encoder = HashingEncoder()
    report = index(engine, rows(corpus), encoder=encoder)
    assert (report.written, report.skipped) == (0, len(corpus))
    assert count(engine) == len(corpus) and encoder.texts_encoded == 0


def test_changed_text_rewrites_the_point_and_another_model_needs_force(engine, corpus):
    index(engine, rows(corpus))
    changed = rows(corpus)
    changed[3]["text"] = "a brand new text"
    assert index(engine, changed).written == 1
    with pytest.raises(ValueError, match=r"indexed by fake/hashing-encoder .* --force"):
        index(engine, changed, encoder=HashingEncoder(seed=1))
    with pytest.warns(UserWarning, match="--force"):
        assert index(engine, changed, encoder=HashingEncoder(seed=1), force=True).written == len(corpus)
    assert count(engine) == len(corpus)
    record = engine.retrieve(COLLECTION, [point_id(changed[3]["id"])])[0]
    assert record.payload["text"] == "a brand new text"
    assert record.payload[MODEL_HASH_KEY] == HashingEncoder(seed=1).identity()["weights_sha256"]


@pytest.mark.parametrize("versioned", [False, True], ids=["in_place", "versioned"])
def test_resume_after_a_crash(engine, corpus, versioned):
    crashing = HashingEncoder(fail_after_calls=1)  # writes the first batch of 16, then dies
    with pytest.raises(RuntimeError, match="simulated crash"):
        index(engine, rows(corpus), encoder=crashing, versioned=versioned)
    (written,) = engine.list_collections()
    assert engine.count(written) == 16 and engine.aliases() == {}  # a half-written version never goes live
    encoder = HashingEncoder()
    report = index(engine, rows(corpus), encoder=encoder, versioned=versioned)
    assert (report.version, report.written, report.skipped) == (written, len(corpus) - 16, 16)
    assert count(engine) == len(corpus) and encoder.texts_encoded == len(corpus) - 16


def test_indexes_a_datasets_dataset_with_its_payload(engine, corpus):
    dataset = datasets.Dataset.from_list(rows(corpus))
    assert index(engine, dataset).written == len(corpus)
    record = engine.retrieve(COLLECTION, [point_id("d005")])[0]
    encoder = HashingEncoder()
    assert record.payload == {"id": "d005", "text": corpus["d005"], "source": "toy",
                              "model_name": encoder.model_name, MODEL_HASH_KEY: encoder.identity()["weights_sha256"]}


def test_indexes_a_stream_without_a_length(engine, corpus):
    stream = datasets.IterableDataset.from_generator(lambda: iter(rows(corpus)))
    report = index(engine, stream, versioned=True)
    assert report.points == len(corpus) and report.live and count(engine) == len(corpus)


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ({"text": "no id here"}, r"row 17: no 'id' field"),
        ({"id": "x1"}, r"row 17: no 'text' field"),
        ({"id": "x1", "text": "  "}, r"row 17: the text field 'text' is empty"),
        ({"id": "", "text": "fine"}, r"row 17: the id field 'id' is empty"),
        ({"id": "d000", "text": "fine"}, r"row 17: 'id' 'd000' repeats row 0"),
    ],
)
def test_bad_rows_are_named(engine, corpus, bad_row, message):
    documents = rows(corpus)
    documents.insert(17, bad_row)
    with pytest.raises(ValueError, match=message):
        index(engine, documents)


def test_a_repeated_id_is_found_before_anything_is_written(engine, corpus):
    documents = rows(corpus) + [{"id": "d001", "text": "again"}]
    with pytest.raises(ValueError, match=r"row 40: 'id' 'd001' repeats row 1.*nothing was written"):
        index(engine, documents, versioned=True)
    assert engine.list_collections() == [] and engine.aliases() == {}


def test_a_repeated_id_in_a_stream_never_goes_live(engine, corpus):
    documents = rows(corpus) + [{"id": "d001", "text": "again"}]
    with pytest.raises(ValueError, match=r"row 40: 'id' 'd001' repeats row 1"):
        index(engine, iter(documents), versioned=True)
    assert engine.list_collections() == [] and engine.aliases() == {}


def test_custom_id_and_text_fields(engine, corpus):
    documents = [{"key": i, "body": text} for i, text in enumerate(corpus.values())]
    assert index(engine, documents, id_field="key", text_field="body").written == len(corpus)
    hits = search(HashingEncoder(), engine, COLLECTION, documents[4]["body"], top_k=1)  # id field from metadata
    assert hits[0][0].doc_id == "4"


def test_search_finds_each_document_by_its_own_text(engine, corpus):
    index(engine, rows(corpus))
    texts = list(corpus.values())
    results = search(HashingEncoder(), engine, COLLECTION, texts, top_k=3, batch_size=7)
    assert [hits[0].doc_id for hits in results] == list(corpus)
    assert all(len(hits) == 3 and hits[0].score == pytest.approx(1.0, abs=1e-5) for hits in results)
    single = search(HashingEncoder(), engine, COLLECTION, texts[0], top_k=2)
    assert isinstance(single[0][0], SearchHit) and single[0][0].payload["source"] == "toy"


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_evaluation_through_the_index_equals_exact_evaluation(engine, corpus, similarity):
    encoder = HashingEncoder(similarity=similarity)
    queries, relevant = toy_queries(corpus, num_queries=15)
    index(engine, rows(corpus), encoder=encoder, versioned=True)
    through_index = evaluate_through_collection(encoder, engine, COLLECTION, queries, relevant, name="toy")
    exact = InformationRetrievalEvaluator(queries, corpus, relevant, name="toy")(encoder)
    assert through_index.keys() == exact.keys()
    assert through_index == pytest.approx(exact, abs=1e-6)
    with_recall = evaluate_through_collection(encoder, engine, COLLECTION, queries, relevant, with_index_recall=True)
    assert with_recall["index_recall@10"] == pytest.approx(1.0)  # below the HNSW threshold: exact


def test_evaluation_with_another_model_is_an_error_unless_forced(engine, corpus):
    queries, relevant = toy_queries(corpus, num_queries=3)
    index(engine, rows(corpus), encoder=HashingEncoder(seed=1))
    with pytest.raises(ValueError, match=r"indexed by fake/hashing-encoder \(sha256 .*weights_sha256"):
        evaluate_through_collection(HashingEncoder(), engine, COLLECTION, queries, relevant)
    with pytest.warns(UserWarning, match="other weights"):
        evaluate_through_collection(HashingEncoder(), engine, COLLECTION, queries, relevant, force=True)
