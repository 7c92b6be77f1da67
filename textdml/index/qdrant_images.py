"""Images and captions in one Qdrant collection, with named vectors ``image`` and ``text``.

Text queries search the ``image`` vectors (text -> image) and image queries the ``text`` vectors
(image -> caption). Point ids, payloads and idempotent re-runs work as for text documents
(``textdml.index.qdrant``), whose helpers this module uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Sized
from typing import Any

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client.models import Distance, PointStruct, QueryRequest, VectorParams
from tqdm.auto import tqdm

from textdml.index.qdrant import (
    MODEL_HASH_KEY,
    MODEL_NAME_KEY,
    SearchHit,
    batches,
    describe_vectors,
    document_payload,
    point_id,
    to_hit,
    unchanged_point_ids,
)

VECTOR_NAMES = ("image", "text")


def ensure_image_text_collection(client: QdrantClient, name: str, vector_size: int, recreate: bool = False) -> bool:
    """Create ``name`` with cosine named vectors ``image`` and ``text``; an existing collection of
    another layout is an error unless ``recreate=True``. Returns whether it was created."""
    wanted = {vector: VectorParams(size=vector_size, distance=Distance.COSINE) for vector in VECTOR_NAMES}
    if recreate and client.collection_exists(name):
        client.delete_collection(name)
    if client.collection_exists(name):
        existing = client.get_collection(name).config.params.vectors
        if not isinstance(existing, Mapping) or {k: (v.size, v.distance) for k, v in existing.items()} != {
                k: (v.size, v.distance) for k, v in wanted.items()}:
            raise ValueError(f"Qdrant collection {name!r} exists with {describe_vectors(existing)}, but image-text "
                             f"indexing needs named vectors image and text of size {vector_size} (cosine); pass "
                             "recreate=True to delete it and index again")
        return False
    client.create_collection(name, vectors_config=wanted)
    return True


def to_numpy(vectors: Any) -> np.ndarray:
    if hasattr(vectors, "detach"):
        vectors = vectors.detach().float().cpu().numpy()
    return np.asarray(vectors, dtype=np.float32)


def index_image_text(model: Any, rows: Iterable[Mapping[str, Any]], client: QdrantClient, collection: str,
                     id_field: str = "id", image_field: str = "image", text_field: str = "text",
                     batch_size: int = 64, recreate: bool = False, show_progress_bar: bool = True) -> int:
    """Embed each row's image and caption into one point with vectors ``image`` and ``text``.

    ``image_field`` must hold file paths (they are stored in the payload so hits can be shown).
    Returns the number of points written by this call (unchanged rows are skipped).
    """
    ensure_image_text_collection(client, collection, model.embedding_dim, recreate)
    identity = model.identity()
    model_fields = {MODEL_NAME_KEY: identity["model_name"], MODEL_HASH_KEY: identity["weights_sha256"]}
    written, seen = 0, set()
    total = len(rows) if isinstance(rows, Sized) else None
    with tqdm(total=total, desc=f"Indexing into {collection}", unit="pair", disable=not show_progress_bar) as progress:
        for batch_number, batch in enumerate(batches(rows, batch_size)):
            payloads = {}
            for row_number, row in enumerate(batch, start=batch_number * batch_size):
                payload = document_payload(dict(row), row_number, id_field, text_field, model_fields)
                if not isinstance(payload.get(image_field), str):
                    raise ValueError(f"row {row_number}: {image_field!r} must be an image file path to store in the "
                                     f"payload, got {type(payload.get(image_field)).__name__}")
                if payload[id_field] in seen:
                    raise ValueError(f"row {row_number}: {id_field!r} {payload[id_field]!r} repeats an earlier row")
                seen.add(payload[id_field])
                payloads[point_id(payload[id_field])] = payload
            unchanged = unchanged_point_ids(client, collection, payloads)
            todo = {pid: p for pid, p in payloads.items() if pid not in unchanged}
            if todo:
                images = to_numpy(model.encode_images([p[image_field] for p in todo.values()], convert_to="numpy"))
                texts = to_numpy(model.encode([p[text_field] for p in todo.values()], convert_to="numpy"))
                points = [PointStruct(id=pid, vector={"image": image.tolist(), "text": text.tolist()}, payload=p)
                          for (pid, p), image, text in zip(todo.items(), images, texts, strict=True)]
                client.upsert(collection, points=points, wait=True)
                written += len(points)
            progress.update(len(batch))
    return written


def query_named(client: QdrantClient, collection: str, vectors: np.ndarray, using: str, top_k: int,
                id_field: str) -> list[list[SearchHit]]:
    requests = [QueryRequest(query=v.tolist(), using=using, limit=top_k, with_payload=True) for v in vectors]
    return [[to_hit(point, id_field) for point in response.points]
            for response in client.query_batch_points(collection, requests=requests)]


def search_images_by_text(model: Any, client: QdrantClient, collection: str, texts: str | Sequence[str],
                          top_k: int = 5, id_field: str = "id") -> list[list[SearchHit]]:
    """Text queries -> the nearest images (their ids, paths and captions in the payload)."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    return query_named(client, collection, to_numpy(model.encode(texts, convert_to="numpy")), "image", top_k, id_field)


def search_texts_by_image(model: Any, client: QdrantClient, collection: str, images: Sequence[Any],
                          top_k: int = 5, id_field: str = "id") -> list[list[SearchHit]]:
    """Image queries (paths or PIL images) -> the nearest captions."""
    vectors = to_numpy(model.encode_images(list(images), convert_to="numpy"))
    return query_named(client, collection, vectors, "text", top_k, id_field)
