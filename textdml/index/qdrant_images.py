"""Images and captions in one collection, with named vectors ``image`` and ``text``.

Text queries search the ``image`` vectors (text -> image) and image queries the ``text`` vectors
(image -> caption). Point ids, payloads and idempotent re-runs work as for text documents
(``textdml.index.documents``); the collection is written in place, on either engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Sized
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from textdml.index.documents import (
    MODEL_HASH_KEY,
    MODEL_NAME_KEY,
    batches,
    document_payload,
    point_id,
    unchanged_point_ids,
)
from textdml.index.engine import CollectionOptions, Point, VectorEngine, VectorSpec
from textdml.index.indexing import as_engine
from textdml.index.searching import SearchHit, Target, search_vectors

VECTOR_NAMES = ("image", "text")


def ensure_image_text_collection(engine: VectorEngine, name: str, vector_size: int, recreate: bool = False,
                                 options: CollectionOptions | None = None) -> bool:
    """Create ``name`` with cosine named vectors ``image`` and ``text``; an existing collection of
    another layout is an error unless ``recreate=True``. Returns whether it was created."""
    engine = as_engine(engine)
    wanted = {vector: VectorSpec(vector_size, "cosine") for vector in VECTOR_NAMES}
    if recreate and engine.collection_exists(name):
        engine.delete_collection(name)
    if engine.collection_exists(name):
        info = engine.collection_info(name)
        if dict(info.vectors) != wanted:
            raise ValueError(f"Qdrant collection {name!r} exists with {info.describe_vectors()}, but image-text "
                             f"indexing needs named vectors image and text of size {vector_size} (cosine); pass "
                             "recreate=True to delete it and index again")
        return False
    engine.create_collection(name, wanted, options or CollectionOptions(), {})
    return True


def to_numpy(vectors: Any) -> np.ndarray:
    if hasattr(vectors, "detach"):
        vectors = vectors.detach().float().cpu().numpy()
    return np.asarray(vectors, dtype=np.float32)


def index_image_text(model: Any, rows: Iterable[Mapping[str, Any]], engine: VectorEngine, collection: str,
                     id_field: str = "id", image_field: str = "image", text_field: str = "text",
                     batch_size: int = 64, recreate: bool = False, show_progress_bar: bool = True,
                     options: CollectionOptions | None = None) -> int:
    """Embed each row's image and caption into one point with vectors ``image`` and ``text``.

    ``image_field`` must hold file paths (they are stored in the payload so hits can be shown).
    Returns the number of points written by this call (unchanged rows are skipped).
    """
    engine = as_engine(engine)
    with engine.writing():
        ensure_image_text_collection(engine, collection, model.embedding_dim, recreate, options)
        identity = model.identity()
        model_fields = {MODEL_NAME_KEY: identity["model_name"], MODEL_HASH_KEY: identity["weights_sha256"]}
        written, seen = 0, set()
        total = len(rows) if isinstance(rows, Sized) else None
        with tqdm(total=total, desc=f"Indexing into {collection}", unit="pair",
                  disable=not show_progress_bar) as progress:
            for batch_number, batch in enumerate(batches(rows, batch_size)):
                payloads = {}
                for row_number, row in enumerate(batch, start=batch_number * batch_size):
                    payload = document_payload(dict(row), row_number, id_field, text_field, model_fields)
                    if not isinstance(payload.get(image_field), str):
                        raise ValueError(f"row {row_number}: {image_field!r} must be an image file path to store in "
                                         f"the payload, got {type(payload.get(image_field)).__name__}")
                    if payload[id_field] in seen:
                        raise ValueError(f"row {row_number}: {id_field!r} {payload[id_field]!r} repeats an earlier row")
                    seen.add(payload[id_field])
                    payloads[point_id(payload[id_field])] = payload
                unchanged = unchanged_point_ids(engine, collection, payloads)
                todo = {pid: p for pid, p in payloads.items() if pid not in unchanged}
                if todo:
                    images = to_numpy(model.encode_images([p[image_field] for p in todo.values()], convert_to="numpy"))
                    texts = to_numpy(model.encode([p[text_field] for p in todo.values()], convert_to="numpy"))
                    engine.upsert(collection, [Point(pid, {"image": image, "text": text}, p)
                                               for (pid, p), image, text in zip(todo.items(), images, texts, strict=True)])
                    written += len(todo)
                progress.update(len(batch))
        engine.finish(collection, options or CollectionOptions(), show_progress_bar=show_progress_bar)
    return written


def query_named(engine: VectorEngine, collection: str, vectors: np.ndarray, using: str, top_k: int,
                id_field: str) -> list[list[SearchHit]]:
    engine = as_engine(engine)
    name = engine.resolve(collection)
    info = engine.collection_info(name)
    if using not in info.vectors:
        raise ValueError(f"collection {collection!r} has no {using!r} vectors ({info.describe_vectors()}): index it "
                         "with an image-text model")
    return search_vectors(engine, Target(collection, name, id_field, None), vectors, top_k, using=using)


def search_images_by_text(model: Any, engine: VectorEngine, collection: str, texts: str | Sequence[str],
                          top_k: int = 5, id_field: str = "id") -> list[list[SearchHit]]:
    """Text queries -> the nearest images (their ids, paths and captions in the payload)."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    return query_named(engine, collection, to_numpy(model.encode(texts, convert_to="numpy")), "image", top_k, id_field)


def search_texts_by_image(model: Any, engine: VectorEngine, collection: str, images: Sequence[Any],
                          top_k: int = 5, id_field: str = "id") -> list[list[SearchHit]]:
    """Image queries (paths or PIL images) -> the nearest captions."""
    vectors = to_numpy(model.encode_images(list(images), convert_to="numpy"))
    return query_named(engine, collection, vectors, "text", top_k, id_field)
