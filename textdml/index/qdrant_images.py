"""Images and captions in one collection, with named vectors ``image`` and ``text``.

Text queries search the ``image`` vectors (text -> image) and image queries the ``text`` vectors
(image -> caption). The collection has the lifecycle of a text collection
(:func:`~textdml.index.indexing.index_rows`): every run writes a new version, checks its count
and moves the alias only when it is complete; the model identity is stored and checked on index
and search; ``textdml collections`` lists the versions and ``textdml rollback`` moves the alias
back; a run killed with ``kill -9`` is resumed. ``versioned=False`` writes in place, as before.
Point ids, payloads and idempotent re-runs work as for text documents (``textdml.index.documents``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from textdml.index.documents import encode_vectors
from textdml.index.engine import CollectionOptions, SearchOptions, VectorEngine, VectorSpec
from textdml.index.indexing import IndexReport, VectorSource, as_engine, index_rows
from textdml.index.searching import SearchHit, Target, open_target, search_vectors
from textdml.models.identity import model_identity

VECTOR_NAMES = ("image", "text")


def to_numpy(vectors: Any) -> np.ndarray:
    if hasattr(vectors, "detach"):
        vectors = vectors.detach().float().cpu().numpy()
    return np.asarray(vectors, dtype=np.float32)


def image_text_source(model: Any, image_field: str, text_field: str, encode_batch_size: int) -> VectorSource:
    """Each row's image file -> its ``image`` vector, its caption -> its ``text`` vector (cosine)."""
    spec = VectorSpec(int(model.embedding_dim), "cosine")  # both towers' outputs are L2-normalised

    def check_row(payload: dict[str, Any], row_number: int) -> None:
        check_image_file(payload.get(image_field), image_field, row_number)

    def embed(payloads: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        images = model.encode_images([payload[image_field] for payload in payloads], batch_size=encode_batch_size,
                                     convert_to="numpy")
        texts = encode_vectors(model, [payload[text_field] for payload in payloads], encode_batch_size,
                               role="document")
        return {"image": to_numpy(images), "text": texts}

    return VectorSource({name: spec for name in VECTOR_NAMES}, embed, check_row, {"image_field": image_field}, "pair")


def check_image_file(path: Any, image_field: str, row_number: int) -> None:
    """The row's image must be a readable image file: a ``ValueError`` naming the file and the row, raised
    before anything of its chunk is encoded (so the run's version is removed, not left ``building``)."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(path, str):
        raise ValueError(f"row {row_number}: {image_field!r} must be an image file path to store in the payload, "
                         f"got {type(path).__name__}; set image_field= to the column of paths")
    where = f"row {row_number}: {image_field!r}"
    if not os.path.isfile(path):
        raise ValueError(f"{where}: image file {path!r} does not exist"
                         + (" (relative paths are read from the current folder)" if not os.path.isabs(path) else "")
                         + "; fix the path or drop the row")
    try:
        with Image.open(path):  # reads the header only: cheap, and catches files that are no image
            pass
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{where}: cannot read the image file {path!r} ({err}); replace it or drop the row") from err


def check_image_files(rows: Any, image_field: str) -> None:
    """Every image path of ``rows``, before a version is created, when the paths can be read cheaply
    (a list of dicts, or a ``datasets.Dataset`` column); streams are checked chunk by chunk instead."""
    if type(rows).__module__.startswith("datasets.") and type(rows).__name__ == "Dataset":
        if image_field not in rows.column_names:
            return  # the row check names the missing field
        paths: Iterable[Any] = rows[image_field]
    elif isinstance(rows, Sequence) and not isinstance(rows, (str, bytes)):
        paths = (row.get(image_field) if isinstance(row, Mapping) else None for row in rows)
    else:
        return
    for row_number, path in enumerate(paths):
        check_image_file(path, image_field, row_number)


def index_image_text(model: Any, rows: Iterable[Mapping[str, Any]], engine: VectorEngine, collection: str,
                     id_field: str = "id", image_field: str = "image", text_field: str = "text",
                     batch_size: int = 64, recreate: bool = False, show_progress_bar: bool = True,
                     options: CollectionOptions | None = None, *, versioned: bool = True, swap: bool = True,
                     force: bool = False, encode_batch_size: int = 32) -> IndexReport:
    """Embed each row's image and caption into one point with vectors ``image`` and ``text``.

    Versions, resume, identity checks and ``versioned=False`` work as in
    :func:`~textdml.index.indexing.index_documents`, whose arguments these are; ``image_field``
    must hold image file paths (they are stored in the payload so hits can be shown).

    Returns:
        An :class:`~textdml.index.indexing.IndexReport` (``written``: pairs encoded by this run;
        rows stored unchanged are ``skipped``).

    Raises:
        ValueError: a row without an image path, id or caption, whose image file is missing or
            unreadable, or repeating an id (naming the row and the file); a collection of another
            layout (unless ``force``); in place, another model (unless ``force``).
    """
    if encode_batch_size < 1:
        raise ValueError(f"encode_batch_size must be >= 1, got {encode_batch_size}")
    check_image_files(rows, image_field)
    source = image_text_source(model, image_field, text_field, encode_batch_size)
    return index_rows(source, model_identity(model), rows, engine, collection, id_field, text_field, batch_size,
                      recreate, show_progress_bar, versioned=versioned, swap=swap, force=force, options=options)


def open_named(model: Any, engine: VectorEngine, collection: str, using: str, id_field: str | None, filter: Any,
               force: bool) -> tuple[VectorEngine, Target]:
    engine = as_engine(engine)
    return engine, open_target(engine, collection, model, force=force, filter=filter, using=using, id_field=id_field)


def search_images_by_text(model: Any, engine: VectorEngine, collection: str, texts: str | Sequence[str],
                          top_k: int = 5, id_field: str | None = None, *, filter: Any = None, force: bool = False,
                          options: SearchOptions | None = None) -> list[list[SearchHit]]:
    """Text queries -> the nearest images (their ids, paths and captions in the payload).

    ``collection`` is an alias (a versioned collection) or a plain collection; it must have been
    indexed by ``model`` unless ``force`` (checked before anything is encoded). ``filter`` is a
    qdrant-client ``models.Filter`` (see :func:`~textdml.index.filters.parse_filters`).
    """
    engine, target = open_named(model, engine, collection, "image", id_field, filter, force)
    vectors = encode_vectors(model, [texts] if isinstance(texts, str) else list(texts), role="query")
    return search_vectors(engine, target, vectors, top_k, filter, options, using="image")


def search_texts_by_image(model: Any, engine: VectorEngine, collection: str, images: Sequence[Any],
                          top_k: int = 5, id_field: str | None = None, *, filter: Any = None, force: bool = False,
                          options: SearchOptions | None = None) -> list[list[SearchHit]]:
    """Image queries (paths or PIL images) -> the nearest captions (checks as :func:`search_images_by_text`)."""
    engine, target = open_named(model, engine, collection, "text", id_field, filter, force)
    vectors = to_numpy(model.encode_images(list(images), convert_to="numpy"))
    return search_vectors(engine, target, vectors, top_k, filter, options, using="text")
