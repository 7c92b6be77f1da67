from __future__ import annotations

import datasets
import pytest

from tests.fakes import HashingEncoder, toy_corpus, toy_queries
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


@pytest.fixture
def client(tmp_path):
    client = open_client(path=tmp_path / "qdrant")
    yield client
    client.close()


@pytest.fixture(scope="module")
def corpus():
    return toy_corpus(num_docs=40)


def rows(corpus):
    return [{"id": doc_id, "text": text, "source": "toy"} for doc_id, text in corpus.items()]


def count(client):
    return client.count(COLLECTION, exact=True).count


def index(client, documents, encoder=None, **kwargs):
    return index_documents(encoder or HashingEncoder(), documents, client, COLLECTION, batch_size=16,
                           show_progress_bar=False, **kwargs)


def test_open_client_needs_exactly_one_location(tmp_path):
    with pytest.raises(ValueError, match="exactly one of path= .* or url="):
        open_client()
    with pytest.raises(ValueError, match="exactly one"):
        open_client(path=tmp_path, url="http://localhost:6333")
    with pytest.raises(ValueError, match="api_key"):
        open_client(path=tmp_path, api_key="secret")


def test_point_id_is_a_deterministic_uuid():
    assert point_id("d001") == point_id("d001") != point_id("d002")
    assert point_id(7) == point_id("7")
    assert len(point_id("d001")) == 36


@pytest.mark.parametrize("similarity, distance", [("cosine", "Cosine"), ("dot", "Dot")])
def test_ensure_collection_creates_with_the_model_distance(client, similarity, distance):
    assert ensure_collection(client, COLLECTION, 16, similarity) is True
    vectors = client.get_collection(COLLECTION).config.params.vectors
    assert (vectors.size, vectors.distance.value) == (16, distance)
    assert ensure_collection(client, COLLECTION, 16, similarity) is False


@pytest.mark.parametrize("encoder", [HashingEncoder(embedding_dim=8), HashingEncoder(similarity="dot")],
                         ids=["size", "distance"])
def test_mismatch_is_an_error_and_keeps_the_points(client, corpus, encoder):
    index(client, rows(corpus))
    with pytest.raises(ValueError, match=r"exists with size=16, distance=Cosine.*needs size=.*recreate=True"):
        index(client, rows(corpus), encoder=encoder)
    assert count(client) == len(corpus)


def test_recreate_replaces_the_collection(client, corpus):
    index(client, rows(corpus))
    dot_encoder = HashingEncoder(embedding_dim=8, similarity="dot")
    assert index(client, rows(corpus)[:5], encoder=dot_encoder, recreate=True) == 5
    vectors = client.get_collection(COLLECTION).config.params.vectors
    assert (vectors.size, vectors.distance.value, count(client)) == (8, "Dot", 5)


def test_rerun_is_idempotent_and_skips_encoding(client, corpus):
    assert index(client, rows(corpus)) == len(corpus)
    encoder = HashingEncoder()
    assert index(client, rows(corpus), encoder=encoder) == 0
    assert count(client) == len(corpus) and encoder.texts_encoded == 0


def test_changed_text_or_model_rewrites_the_point(client, corpus):
    index(client, rows(corpus))
    changed = rows(corpus)
    changed[3]["text"] = "a brand new text"
    assert index(client, changed) == 1
    assert index(client, changed, encoder=HashingEncoder(seed=1)) == len(corpus)
    assert count(client) == len(corpus)
    record = client.retrieve(COLLECTION, [point_id(changed[3]["id"])])[0]
    assert record.payload["text"] == "a brand new text"
    assert record.payload[MODEL_HASH_KEY] == HashingEncoder(seed=1).identity()["weights_sha256"]


def test_resume_after_a_crash(client, corpus):
    crashing = HashingEncoder(fail_after_calls=1)  # writes the first batch of 16, then dies
    with pytest.raises(RuntimeError, match="simulated crash"):
        index(client, rows(corpus), encoder=crashing)
    assert count(client) == 16
    encoder = HashingEncoder()
    assert index(client, rows(corpus), encoder=encoder) == len(corpus) - 16
    assert count(client) == len(corpus) and encoder.texts_encoded == len(corpus) - 16


def test_indexes_a_datasets_dataset_with_its_payload(client, corpus):
    dataset = datasets.Dataset.from_list(rows(corpus))
    assert index(client, dataset) == len(corpus)
    record = client.retrieve(COLLECTION, [point_id("d005")])[0]
    encoder = HashingEncoder()
    assert record.payload == {"id": "d005", "text": corpus["d005"], "source": "toy",
                              "model_name": encoder.model_name, MODEL_HASH_KEY: encoder.identity()["weights_sha256"]}


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
def test_bad_rows_are_named(client, corpus, bad_row, message):
    documents = rows(corpus)
    documents.insert(17, bad_row)
    with pytest.raises(ValueError, match=message):
        index(client, documents)


def test_custom_id_and_text_fields(client, corpus):
    documents = [{"key": i, "body": text} for i, text in enumerate(corpus.values())]
    assert index(client, documents, id_field="key", text_field="body") == len(corpus)
    hits = search(HashingEncoder(), client, COLLECTION, documents[4]["body"], top_k=1, id_field="key")
    assert hits[0][0].doc_id == "4"


def test_search_finds_each_document_by_its_own_text(client, corpus):
    index(client, rows(corpus))
    texts = list(corpus.values())
    results = search(HashingEncoder(), client, COLLECTION, texts, top_k=3, batch_size=7)
    assert [hits[0].doc_id for hits in results] == list(corpus)
    assert all(len(hits) == 3 and hits[0].score == pytest.approx(1.0, abs=1e-5) for hits in results)
    single = search(HashingEncoder(), client, COLLECTION, texts[0], top_k=2)
    assert isinstance(single[0][0], SearchHit) and single[0][0].payload["source"] == "toy"


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_evaluation_through_qdrant_equals_exact_evaluation(client, corpus, similarity):
    encoder = HashingEncoder(similarity=similarity)
    queries, relevant = toy_queries(corpus, num_queries=15)
    index(client, rows(corpus), encoder=encoder)
    through_qdrant = evaluate_through_collection(encoder, client, COLLECTION, queries, relevant, name="toy")
    exact = InformationRetrievalEvaluator(queries, corpus, relevant, name="toy")(encoder)
    assert through_qdrant.keys() == exact.keys()
    assert through_qdrant == pytest.approx(exact, abs=1e-6)


def test_evaluation_warns_about_points_from_other_weights(client, corpus):
    queries, relevant = toy_queries(corpus, num_queries=3)
    index(client, rows(corpus), encoder=HashingEncoder(seed=1))
    with pytest.warns(UserWarning, match="other weights"):
        evaluate_through_collection(HashingEncoder(), client, COLLECTION, queries, relevant)
