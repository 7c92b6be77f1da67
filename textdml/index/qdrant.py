"""Embeddings into Qdrant: collection setup, batched idempotent upsert, search, and evaluation.

One code path serves the embedded local mode (``open_client(path="vectors/")``, a folder, no server)
and a Qdrant server (``open_client(url=..., api_key=...)``). Point ids are derived from document
ids, so indexing twice, or again after a crash, writes each document once.
"""

from __future__ import annotations

import itertools
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from qdrant_client import QdrantClient
from qdrant_client.models import Distance, PointStruct, QueryRequest, ScoredPoint, SearchParams, VectorParams
from tqdm.auto import tqdm

from textdml.evaluation.retrieval import compute_metrics, prefix_metrics

if TYPE_CHECKING:
    import datasets

    from textdml.models.protocols import SupportsEncode

DISTANCES: dict[str, Distance] = {"cosine": Distance.COSINE, "dot": Distance.DOT}
# Payload keys recording which weights produced a point's vector.
MODEL_NAME_KEY = "model_name"
MODEL_HASH_KEY = "model_weights_sha256"
# Fixed forever: changing it would give every document a new point id and duplicate the collection.
POINT_ID_NAMESPACE = uuid.UUID("5b1f3a52-6f0e-4c55-9a4e-2d7c1f0b9e61")


@dataclass(frozen=True)
class SearchHit:
    """One retrieved document: its id, its similarity to the query and its stored payload."""

    doc_id: str
    score: float
    payload: dict[str, Any]


def open_client(path: str | Path | None = None, url: str | None = None, api_key: str | None = None) -> QdrantClient:
    """A Qdrant client: embedded local mode with ``path`` (a folder, or ``":memory:"``), a server with ``url``.

    Example:
        >>> client = open_client(path=":memory:")
        >>> client.collection_exists("docs")
        False
    """
    if (path is None) == (url is None):
        raise ValueError("give exactly one of path= (embedded local Qdrant: a folder, or ':memory:') or url= (a Qdrant "
                         f"server); got path={path!r}, url={url!r}")
    if path is None:
        return QdrantClient(url=url, api_key=api_key)
    if api_key is not None:
        raise ValueError("api_key authenticates to a server given by url=; the embedded mode (path=) has no key")
    if str(path) == ":memory:":
        return QdrantClient(location=":memory:")
    return QdrantClient(path=str(path))


def distance_for(similarity: str) -> Distance:
    if similarity not in DISTANCES:
        raise ValueError(f"similarity must be one of {sorted(DISTANCES)}, got {similarity!r}")
    return DISTANCES[similarity]


def describe_vectors(vectors: Any) -> str:
    if isinstance(vectors, VectorParams):
        return f"size={vectors.size}, distance={vectors.distance.value}"
    if isinstance(vectors, Mapping):
        return f"named vectors {sorted(vectors)}"
    return repr(vectors)


def check_collection(client: QdrantClient, name: str, vector_size: int, similarity: Literal["cosine", "dot"]) -> None:
    """Raise a ValueError unless collection ``name`` exists with one vector of this size and distance."""
    distance = distance_for(similarity)
    if not client.collection_exists(name):
        raise ValueError(f"Qdrant collection {name!r} does not exist; index documents into it first")
    existing = client.get_collection(name).config.params.vectors
    if not isinstance(existing, VectorParams) or existing.size != vector_size or existing.distance != distance:
        raise ValueError(
            f"Qdrant collection {name!r} exists with {describe_vectors(existing)}, but the model needs "
            f"size={vector_size}, distance={distance.value}; pass recreate=True to delete it and index again"
        )


def ensure_collection(
    client: QdrantClient,
    name: str,
    vector_size: int,
    similarity: Literal["cosine", "dot"],
    recreate: bool = False,
) -> bool:
    """Create collection ``name`` for vectors of ``vector_size`` scored by ``similarity``, unless it exists.

    An existing collection is kept as it is when its size and distance match, and is an error
    otherwise: nothing is overwritten unless ``recreate=True``, which deletes it first.

    Returns:
        Whether the collection was created.

    Example:
        >>> client = open_client(path=":memory:")
        >>> ensure_collection(client, "docs", vector_size=8, similarity="cosine")
        True
        >>> ensure_collection(client, "docs", vector_size=8, similarity="cosine")
        False
    """
    distance = distance_for(similarity)
    if recreate and client.collection_exists(name):
        client.delete_collection(name)
    if client.collection_exists(name):
        check_collection(client, name, vector_size, similarity)
        return False
    client.create_collection(name, vectors_config=VectorParams(size=vector_size, distance=distance))
    return True


def point_id(doc_id: str | int) -> str:
    """The Qdrant point id of a document: a UUID5 of its id, the same in every run."""
    return str(uuid.uuid5(POINT_ID_NAMESPACE, str(doc_id)))


def batches(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def document_payload(
    row: Any, row_number: int, id_field: str, text_field: str, model_fields: Mapping[str, str]
) -> dict[str, Any]:
    """The payload stored with a document: its fields plus the model identity, after checking the row."""
    if not isinstance(row, Mapping):
        raise ValueError(f"row {row_number}: expected a dict of fields, got {type(row).__name__}")
    for field in (id_field, text_field):
        if field not in row:
            raise ValueError(f"row {row_number}: no {field!r} field (fields: {sorted(row)}); "
                             f"pass id_field= / text_field= to name the right columns")
    if row[id_field] is None or str(row[id_field]) == "":
        raise ValueError(f"row {row_number}: the id field {id_field!r} is empty")
    text = row[text_field]
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"row {row_number}: the text field {text_field!r} is empty or not a string: {text!r}")
    clashing = sorted(set(row) & set(model_fields))
    if clashing:
        raise ValueError(f"row {row_number}: fields {clashing} are reserved for the model identity in the payload")
    return {**row, **model_fields}


def unchanged_point_ids(client: QdrantClient, collection: str, payloads: Mapping[str, dict[str, Any]]) -> set[str]:
    """Point ids already stored with exactly this payload (same fields, same model): nothing to redo."""
    stored = client.retrieve(collection, ids=list(payloads), with_payload=True, with_vectors=False)
    return {str(record.id) for record in stored if record.payload == payloads[str(record.id)]}


def encode_vectors(model: SupportsEncode, texts: list[str]) -> np.ndarray:
    embeddings = model.encode(texts, show_progress_bar=False, convert_to="numpy")
    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().float().cpu().numpy()
    return np.asarray(embeddings, dtype=np.float32)  # (N, D)


def index_documents(
    model: SupportsEncode,
    documents: Iterable[Mapping[str, Any]] | datasets.Dataset,
    client: QdrantClient,
    collection: str,
    id_field: str = "id",
    text_field: str = "text",
    batch_size: int = 256,
    recreate: bool = False,
    show_progress_bar: bool = True,
) -> int:
    """Embed ``documents`` with ``model`` and upsert them into ``collection``, batch by batch.

    Each point's id is :func:`point_id` of the document id and its payload is every field of the
    document plus ``model_name`` and ``model_weights_sha256`` (``model.identity()``). Documents
    already stored with exactly that payload are skipped without encoding, so a second run, or a
    run after a crash, neither duplicates nor loses a document; a changed text or a new model
    rewrites the point. Each upsert waits until Qdrant has applied it.

    Args:
        model: the encoder; the collection is created for ``model.embedding_dim`` and the distance
            of ``model.similarity``.
        documents: rows (dicts, or a ``datasets.Dataset``) with at least ``id_field`` and ``text_field``.
        client: from :func:`open_client`.
        collection: the collection name.
        id_field: the field holding the unique document id.
        text_field: the field holding the text to embed.
        batch_size: documents encoded and upserted together.
        recreate: delete the collection first (needed when the model's size or distance changed).
        show_progress_bar: show a tqdm bar over documents.

    Returns:
        The number of points written by this call (skipped, unchanged documents not counted).

    Raises:
        ValueError: a row without the id or text field, with an empty text, or repeating an id
            (the message names the field and the 0-based row number); a collection of another
            vector size or distance.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ensure_collection(client, collection, model.embedding_dim, model.similarity, recreate=recreate)
    identity = model.identity()
    model_fields = {MODEL_NAME_KEY: identity["model_name"], MODEL_HASH_KEY: identity["weights_sha256"]}
    first_row_of_id: dict[str, int] = {}
    written = 0
    total = len(documents) if isinstance(documents, Sized) else None
    with tqdm(total=total, desc=f"Indexing into {collection}", unit="doc", disable=not show_progress_bar) as progress:
        for batch_number, rows in enumerate(batches(documents, batch_size)):
            payloads: dict[str, dict[str, Any]] = {}
            for row_number, row in enumerate(rows, start=batch_number * batch_size):
                payload = document_payload(row, row_number, id_field, text_field, model_fields)
                doc_id = str(payload[id_field])
                if doc_id in first_row_of_id:
                    raise ValueError(f"row {row_number}: {id_field!r} {doc_id!r} repeats row {first_row_of_id[doc_id]}")
                first_row_of_id[doc_id] = row_number
                payloads[point_id(doc_id)] = payload
            written += upsert_changed(model, client, collection, payloads, text_field)
            progress.update(len(rows))
    return written


def upsert_changed(
    model: SupportsEncode, client: QdrantClient, collection: str, payloads: dict[str, dict[str, Any]], text_field: str
) -> int:
    """Encode and upsert the points of ``payloads`` that are not stored as they are; return how many."""
    unchanged = unchanged_point_ids(client, collection, payloads)
    todo = {pid: payload for pid, payload in payloads.items() if pid not in unchanged}
    if not todo:
        return 0
    vectors = encode_vectors(model, [payload[text_field] for payload in todo.values()])
    points = [
        PointStruct(id=pid, vector=vector.tolist(), payload=payload)
        for (pid, payload), vector in zip(todo.items(), vectors, strict=True)
    ]
    client.upsert(collection, points=points, wait=True)
    return len(points)


def search(
    model: SupportsEncode,
    client: QdrantClient,
    collection: str,
    query: str | Sequence[str],
    top_k: int = 10,
    id_field: str = "id",
    exact: bool = False,
    batch_size: int = 64,
) -> list[list[SearchHit]]:
    """The ``top_k`` nearest documents of each query, best first.

    Args:
        model: the encoder that indexed the collection.
        client: from :func:`open_client`.
        collection: the collection name.
        query: one query or a list of queries.
        top_k: hits per query.
        id_field: the payload field holding the document id (as given to :func:`index_documents`).
        exact: brute-force search instead of the HNSW index (a server's default search is
            approximate; the embedded mode is always exact).
        batch_size: queries sent in one ``query_batch_points`` request.

    Returns:
        One list of :class:`SearchHit` per query (a single string query gives a list of one list).
    """
    queries = [query] if isinstance(query, str) else list(query)
    vectors = encode_vectors(model, queries)
    params = SearchParams(exact=True) if exact else None
    results: list[list[SearchHit]] = []
    for start in range(0, len(vectors), batch_size):
        requests = [
            QueryRequest(query=vector.tolist(), limit=top_k, with_payload=True, params=params)
            for vector in vectors[start : start + batch_size]
        ]
        responses = client.query_batch_points(collection, requests=requests)
        results += [[to_hit(point, id_field) for point in response.points] for response in responses]
    return results


def to_hit(point: ScoredPoint, id_field: str) -> SearchHit:
    payload = point.payload or {}
    if id_field not in payload:
        raise ValueError(f"point {point.id} has no {id_field!r} payload field; pass the id_field used when indexing")
    return SearchHit(doc_id=str(payload[id_field]), score=point.score, payload=payload)


def warn_if_other_model(results: list[list[SearchHit]], weights_sha256: str, collection: str) -> None:
    """Vectors from other weights live in another space: their scores against this model's queries mean nothing."""
    others = {hit.payload.get(MODEL_HASH_KEY) for hits in results for hit in hits} - {weights_sha256}
    if others:
        warnings.warn(
            f"collection {collection!r} holds points embedded by other weights "
            f"({MODEL_HASH_KEY} {sorted(map(str, others))}) than the query model ({weights_sha256}); "
            "re-index with this model",
            stacklevel=3,
        )


def evaluate_through_collection(
    model: SupportsEncode,
    client: QdrantClient,
    collection: str,
    queries: Mapping[str, str],
    relevant_docs: Mapping[str, set[str]],
    k_values: Sequence[int] = (1, 5, 10),
    id_field: str = "id",
    name: str = "",
    exact: bool = False,
    mrr_at_k: int = 10,
    ndcg_at_k: int = 10,
    map_at_k: int = 100,
) -> dict[str, float]:
    """Retrieval metrics of the collection as served: queries search Qdrant, not an in-memory corpus.

    The metrics come from the same :func:`~textdml.evaluation.retrieval.compute_metrics` as
    :class:`~textdml.evaluation.retrieval.InformationRetrievalEvaluator`, so on an exact search the
    two agree; on a server's approximate (HNSW) search the gap measures what the index loses.
    Hits embedded by other weights than ``model``'s give a warning: their scores mean nothing.

    Args:
        model: the encoder that indexed the collection.
        client: from :func:`open_client`.
        collection: the collection name.
        queries: query id -> query text.
        relevant_docs: query id -> ids of the relevant documents; queries without any are skipped.
        k_values: cut-offs for accuracy, precision and recall.
        id_field: the payload field holding the document id.
        name: prefix of the metric names.
        exact: brute-force search instead of the HNSW index.
        mrr_at_k: cut-off for MRR.
        ndcg_at_k: cut-off for nDCG.
        map_at_k: cut-off for MAP.

    Returns:
        Metric name -> value, with the names of ``InformationRetrievalEvaluator``.
    """
    check_collection(client, collection, model.embedding_dim, model.similarity)
    relevant = {str(qid): {str(doc_id) for doc_id in docs} for qid, docs in relevant_docs.items()}
    scored = {str(qid): text for qid, text in queries.items() if relevant.get(str(qid))}
    if not scored:
        raise ValueError("no query has a relevant document: check that the ids of queries and relevant_docs match")
    top_k = max(*k_values, mrr_at_k, ndcg_at_k, map_at_k)
    results = search(model, client, collection, list(scored.values()), top_k=top_k, id_field=id_field, exact=exact)
    warn_if_other_model(results, model.identity()["weights_sha256"], collection)
    hits = {
        qid: [(hit.doc_id, hit.score) for hit in query_hits]
        for qid, query_hits in zip(scored, results, strict=True)
    }
    return prefix_metrics(compute_metrics(hits, relevant, k_values, mrr_at_k, ndcg_at_k, map_at_k), name)
