"""Streaming indexing: documents -> length-sorted encoding -> upserts, overlapped, into a new version.

Documents are read chunk by chunk (a ``datasets.Dataset``, a streaming ``IterableDataset``, a
generator: never all in memory). Each chunk is encoded by the model (sorted by length into batches,
on the model's device) while the previous chunk is being written by a background thread, so neither
waits for the other. Point ids are UUID5 of the document ids: a run killed with ``kill -9`` and run
again resumes its unfinished version, skipping the points already stored, and ends with every
document exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from textdml.errors import refuse_unless_forced
from textdml.index.disk import check_free_space
from textdml.index.documents import (
    MODEL_HASH_KEY,
    MODEL_NAME_KEY,
    batches,
    check_dim,
    check_unique_ids,
    document_payload,
    encode_vectors,
    point_id,
    unchanged_point_ids,
)
from textdml.index.engine import (
    DEFAULT_VECTOR,
    SPARSE_VECTOR,
    CollectionOptions,
    Point,
    SparseSpec,
    VectorEngine,
    VectorSpec,
    describe_vectors,
)
from textdml.index.versions import new_metadata, publish, resumable_version, utc_now, version_name
from textdml.models.identity import ModelIdentity, model_identity

if TYPE_CHECKING:
    import datasets

    from textdml.index.sparse import SparseSource
    from textdml.models.protocols import SupportsEncode

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexReport:
    """What an indexing run did.

    Attributes:
        collection: the name searched (the alias, or the plain collection).
        version: the collection written (a version, or the plain collection itself).
        points: points in it at the end.
        written: points encoded and written by this run.
        skipped: documents already stored as they are (a resumed or in-place run).
        live: whether ``collection`` now serves ``version``.
        replaced: the version that was live before, if the alias moved.
        hnsw_built: whether an HNSW graph was built at the end.
        seconds: wall time of the run.
    """

    collection: str
    version: str
    points: int
    written: int
    skipped: int
    live: bool
    replaced: str | None
    hnsw_built: bool
    seconds: float

    @property
    def docs_per_second(self) -> float:
        return (self.written + self.skipped) / self.seconds if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class VectorSource:
    """What the points of a collection hold, and how a chunk of documents becomes their vectors.

    Text documents have one unnamed vector (:func:`text_source`); image-text pairs the named
    vectors ``image`` and ``text`` (:func:`textdml.index.qdrant_images.image_text_source`). Both go
    through the same versioned lifecycle (:func:`index_rows`).

    Attributes:
        vectors: vector name -> its spec (``{"": spec}`` for one unnamed vector).
        embed: the payloads of a chunk -> vector name -> ``(N, D)`` float32 vectors, in payload order.
        check_row: raises ``ValueError`` naming the row and the field when a payload (checked for
            its id and text already) cannot be embedded; run before anything of its chunk is encoded.
        metadata: more fields for the collection's metadata (e.g. the image field, the sparse source).
        unit: what the progress bar counts.
        sparse: sparse vector name -> its spec (a hybrid collection: ``embed`` gives a list of
            :class:`~textdml.index.engine.SparseValues` under each of these names).
    """

    vectors: Mapping[str, VectorSpec]
    embed: Callable[[list[dict[str, Any]]], Mapping[str, Any]]
    check_row: Callable[[dict[str, Any], int], None] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    unit: str = "doc"
    sparse: Mapping[str, SparseSpec] = field(default_factory=dict)


def text_source(model: SupportsEncode, spec: VectorSpec, text_field: str, encode_batch_size: int,
                dim: int | None = None, sparse: SparseSource | None = None) -> VectorSource:
    """One unnamed vector per document: its text encoded with the model's document prompt (cut to
    ``dim`` coordinates and re-normalised, when given); with ``sparse``, also the sparse vector
    ``"sparse"`` of the text (a hybrid collection), whose source the metadata records."""

    def embed(payloads: list[dict[str, Any]]) -> dict[str, Any]:
        texts = [payload[text_field] for payload in payloads]
        vectors: dict[str, Any] = {DEFAULT_VECTOR: encode_vectors(model, texts, encode_batch_size, role="document",
                                                                  dim=dim)}
        if sparse is not None:
            vectors[SPARSE_VECTOR] = sparse.encode(texts, kind="document", batch_size=encode_batch_size)
        return vectors

    if sparse is None:
        return VectorSource({DEFAULT_VECTOR: spec}, embed)
    return VectorSource({DEFAULT_VECTOR: spec}, embed, metadata={"sparse": sparse.identity()},
                        sparse={SPARSE_VECTOR: SparseSpec(sparse.modifier)})


def check_same_model(stored: Mapping[str, Any], identity: ModelIdentity, name: str, force: bool, verb: str) -> None:
    """Stop when the collection was written by another model (its vectors live in another space)."""
    if not stored.get("identity"):
        return
    theirs = ModelIdentity.from_dict(stored["identity"])
    if theirs.same_vectors(identity):
        return
    message = (f"collection {name!r} was indexed by {theirs.describe()}, but the model given to {verb} is "
               f"{identity.describe()} ({'; '.join(identity.differences(theirs))})")
    refuse_unless_forced(message, "the model that indexed it", force)


def check_vectors(engine: VectorEngine, name: str, vectors: Mapping[str, VectorSpec], hint: str,
                  sparse: Mapping[str, SparseSpec] | None = None) -> None:
    info = engine.collection_info(name)
    if dict(info.vectors) != dict(vectors) or dict(info.sparse) != dict(sparse or {}):
        wanted = describe_vectors(vectors) + "".join(f", sparse vector {n!r} ({spec.modifier})"
                                                     for n, spec in sorted((sparse or {}).items()))
        who = "the model and index.sparse need" if sparse or info.sparse else "the model needs"
        raise ValueError(f"Qdrant collection {name!r} exists with {info.describe_vectors()}, but {who} {wanted}; {hint}")


def as_engine(engine: Any) -> VectorEngine:
    """Accept a bare ``QdrantClient`` too (the API before engines), wrapped in a ClientEngine."""
    if isinstance(engine, VectorEngine):
        return engine
    from qdrant_client import QdrantClient

    if isinstance(engine, QdrantClient):
        from textdml.index.client import ClientEngine

        return ClientEngine.wrap(engine)
    raise TypeError(f"expected a VectorEngine from textdml.index.open_client, got {type(engine).__name__}")


def index_documents(
    model: SupportsEncode,
    documents: Iterable[Mapping[str, Any]] | datasets.Dataset | datasets.IterableDataset,
    engine: VectorEngine,
    collection: str,
    id_field: str = "id",
    text_field: str = "text",
    batch_size: int = 1024,
    recreate: bool = False,
    show_progress_bar: bool = True,
    *,
    versioned: bool = True,
    swap: bool = True,
    force: bool = False,
    options: CollectionOptions | None = None,
    encode_batch_size: int = 128,
    dim: int | None = None,
    replacing: str | None = None,
    sparse: SparseSource | str | None = None,
) -> IndexReport:
    """Embed ``documents`` with ``model`` and write them to ``collection``.

    Versioned (the default): the run writes a new version ``<collection>__<model>__<time>``,
    checks that it holds one point per document, builds HNSW once if it is large enough, and then
    (``swap=True``) points the alias ``collection`` at it atomically. A new version may hold another
    model than the live one (blue/green: index the new model, then swap); an unfinished version
    left by a killed run of the same model is resumed instead of starting over. ``versioned=False`` writes
    into the plain collection ``collection`` in place, skipping documents stored unchanged.

    Each point's id is :func:`~textdml.index.documents.point_id` of the document id and its
    payload is every field of the document plus ``model_name`` and ``model_weights_sha256``.

    Args:
        model: the encoder (``embedding_dim``, ``similarity``, ``encode``, ``identity``).
        documents: rows with at least ``id_field`` and ``text_field``; a list, a ``datasets``
            table or any iterable (read lazily, chunk by chunk).
        engine: from :func:`~textdml.index.open_client` (Edge or qdrant-client).
        collection: the name to search by (an alias when versioned).
        id_field: the field holding the unique document id.
        text_field: the field holding the text to embed.
        batch_size: documents read, encoded (sorted by length) and written together.
        recreate: in place: delete the collection first; versioned: start a fresh version instead
            of resuming an unfinished one.
        show_progress_bar: tqdm bars for documents (docs/s) and the HNSW build.
        versioned: write a new version and move the alias (True) or write in place (False).
        swap: versioned: move the alias to the new version when it is complete.
        force: in place: write although the collection was indexed by another model; versioned: a
            new version of image-text points under a name of text points (or the reverse).
        options: HNSW, quantization, on-disk and payload-index settings of a new collection.
        encode_batch_size: texts per forward pass of the model.
        dim: store only the first ``dim`` coordinates of each vector (a Matryoshka-trained model),
            re-normalised to unit length; the collection records it, so search cuts its queries
            the same way. A new version may have another ``dim`` than the live one.
        replacing: versioned: the live version that earlier weights of the caller's own model wrote
            (re-mining during training re-encodes with the weights as they learn); only the log line
            about a change of model leaves it out.
        sparse: a hybrid collection: also store each text's sparse vector ``"sparse"`` from this
            source (``"bm25"``, a sparse model folder, or a
            :class:`~textdml.index.sparse.SparseSource`); its identity is recorded beside the
            model's, so only a run with the same source resumes a version.

    Returns:
        An :class:`IndexReport`.

    Raises:
        ValueError: a row without the id or text field, with an empty text, or repeating an id
            (the message names the field and the 0-based row number; a versioned run then
            removes its unfinished version, so nothing goes live); in place, a collection of another
            vector size or model (unless ``force``); a ``dim`` below 1 or above the model's size.
    """
    if encode_batch_size < 1:
        raise ValueError(f"encode_batch_size must be >= 1, got {encode_batch_size}")
    check_dim(dim, int(model.embedding_dim))
    identity = model_identity(model, truncate_dim=dim)
    from textdml.index.sparse import load_sparse_source

    source = text_source(model, VectorSpec(identity.vector_size, identity.similarity), text_field, encode_batch_size,
                         dim, load_sparse_source(sparse))
    return index_rows(source, identity, documents, engine, collection, id_field, text_field, batch_size, recreate,
                      show_progress_bar, versioned=versioned, swap=swap, force=force, options=options,
                      replacing=replacing)


def index_rows(
    source: VectorSource,
    identity: ModelIdentity,
    documents: Iterable[Mapping[str, Any]],
    engine: VectorEngine,
    collection: str,
    id_field: str,
    text_field: str,
    batch_size: int,
    recreate: bool,
    show_progress_bar: bool,
    *,
    versioned: bool,
    swap: bool,
    force: bool,
    options: CollectionOptions | None,
    replacing: str | None = None,
) -> IndexReport:
    """The indexing lifecycle of any :class:`VectorSource` (the arguments are
    :func:`index_documents`'): open a version (or the plain collection), stream the rows in, check
    the count, build HNSW, record the metadata, move the alias."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    engine = as_engine(engine)
    options = options or CollectionOptions()
    check_unique_ids(documents, id_field)
    started = time.perf_counter()
    with engine.writing():
        metadata = {**new_metadata(collection, identity, id_field, text_field), **source.metadata}
        expected = len(documents) if isinstance(documents, Sized) else None
        if versioned:
            target, created = open_version(engine, collection, identity, source.vectors, options, metadata,
                                           force=force, fresh=recreate, replacing=replacing, expected_points=expected,
                                           sparse=source.sparse)
        else:
            target, created = open_in_place(engine, collection, identity, source.vectors, options, metadata,
                                            force=force, recreate=recreate, expected_points=expected,
                                            sparse=source.sparse)
        try:
            written, skipped, seen, fields = stream_into(source, documents, engine, target, identity, id_field,
                                                         text_field, batch_size, show_progress_bar)
        except ValueError:
            if versioned:  # bad input: nothing of this run may go live or linger half-written
                engine.delete_collection(target)
            raise
        points = engine.count(target)
        if versioned and points != seen:
            raise ValueError(f"version {target!r} holds {points} points but this run indexed {seen} distinct "
                             "documents (an unfinished version resumed with other documents?); it stays unpublished: "
                             f"delete it with `textdml collections --delete {target}` and index again")
        hnsw_built = engine.finish(target, options, show_progress_bar=show_progress_bar)
        metadata = dict(engine.collection_info(target, count=False).metadata)
        old_fields = set(metadata.get("fields", [])) if not versioned or not created else set()
        metadata.update(status="ready", points=points, finished=utc_now().isoformat(timespec="seconds"),
                        fields=sorted(fields | old_fields), identity=identity.to_dict())
        engine.set_metadata(target, metadata)
        replaced, live = None, not versioned
        if versioned and swap:
            replaced = publish(engine, collection, target)
            live = True
    report = IndexReport(collection=collection, version=target, points=points, written=written, skipped=skipped,
                         live=live, replaced=replaced, hnsw_built=hnsw_built, seconds=time.perf_counter() - started)
    logger.debug("indexed %d documents into %s (%d written, %d unchanged) at %.0f docs/s%s", seen, target, written,
                skipped, report.docs_per_second, f"; alias {collection!r} now points at it" if versioned and swap else "")
    return report


def open_version(engine: VectorEngine, collection: str, identity: ModelIdentity, vectors: Mapping[str, VectorSpec],
                 options: CollectionOptions, metadata: Mapping[str, Any], force: bool, fresh: bool,
                 replacing: str | None = None, expected_points: int | None = None,
                 sparse: Mapping[str, SparseSpec] | None = None) -> tuple[str, bool]:
    """The version to write: an unfinished one of this model (and sparse source) to resume, or a new one
    (when the disk has room for ``expected_points``). Returns ``(name, created)``."""
    if engine.collection_exists(collection):
        raise ValueError(f"{collection!r} is a plain (unversioned) collection in {engine.location}: index it in place "
                         "(versioned=False, --no-version), or pick another index.collection for versioned indexing")
    live = engine.aliases().get(collection)
    if live is not None:
        # A new version may hold any model or vector size: that is what versions are for (index the
        # new model beside the live one, then swap). Vectors are compared, and their model checked,
        # where they meet: search, mining, a resumed version and in-place writes. Only a change
        # between text and image-text points is refused: one alias would then answer two kinds of query.
        live_info = engine.collection_info(live, count=False)  # never lock the live shard its readers use
        if set(live_info.vectors) != set(vectors) and not force:
            raise ValueError(f"the model writes {describe_vectors(vectors)} vectors but collection {collection!r} "
                             f"(live version {live!r}) holds {live_info.describe_vectors()}: text and image-text "
                             "points under one name; pick another index.collection, or pass --force (force=True) "
                             "to index a new version anyway")
        stored = live_info.metadata.get("identity")
        if stored and not ModelIdentity.from_dict(stored).same_vectors(identity) and live != replacing:
            logger.info("collection %r: the live version %s was indexed by %s; the new version holds %s", collection,
                        live, ModelIdentity.from_dict(stored).describe(), identity.describe())
    resumed = None if fresh else resumable_version(engine, collection, identity, vectors,
                                                   sparse=metadata.get("sparse"))
    if resumed is not None:
        logger.info("resuming the unfinished version %s", resumed)
        return resumed, False
    check_room(engine, vectors, expected_points)
    name = version_name(collection, identity)
    engine.create_collection(name, vectors, options, metadata, sparse=sparse)
    return name, True


def check_same_sparse(stored: Mapping[str, Any] | None, identity: Mapping[str, Any] | None, collection: str) -> None:
    """In place, new sparse vectors must come from the source of those already stored (no ``force``:
    one collection with two BM25 settings, or two vocabularies, would rank by nonsense)."""
    if stored and identity and stored != identity:
        from textdml.index.sparse import describe_sparse, sparse_differences

        raise ValueError(f"collection {collection!r} holds sparse vectors of {describe_sparse(stored)}, but this run "
                         f"writes {describe_sparse(identity)} ({'; '.join(sparse_differences(stored, identity))}); "
                         "index it with the same index.sparse, or pass recreate=True to delete it and index again")


def check_room(engine: VectorEngine, vectors: Mapping[str, VectorSpec], points: int | None) -> None:
    """A new collection in a local folder must fit on its disk (see :mod:`textdml.index.disk`)."""
    if engine.local_folder is not None:
        check_free_space(engine.local_folder, points, sum(spec.size for spec in vectors.values()))


def open_in_place(engine: VectorEngine, collection: str, identity: ModelIdentity, vectors: Mapping[str, VectorSpec],
                  options: CollectionOptions, metadata: Mapping[str, Any], force: bool,
                  recreate: bool, expected_points: int | None = None,
                  sparse: Mapping[str, SparseSpec] | None = None) -> tuple[str, bool]:
    if collection in engine.aliases():
        raise ValueError(f"{collection!r} is an alias of versioned collections: writing in place would change the "
                         "live version under its readers; index a new version instead (versioned=True)")
    if recreate and engine.collection_exists(collection):
        engine.delete_collection(collection)
    if engine.collection_exists(collection):
        check_vectors(engine, collection, vectors, "pass recreate=True to delete it and index again", sparse)
        stored = engine.collection_info(collection, count=False).metadata
        check_same_model(stored, identity, collection, force, "index")
        check_same_sparse(stored.get("sparse"), metadata.get("sparse"), collection)
        return collection, False
    check_room(engine, vectors, expected_points)
    engine.create_collection(collection, vectors, options, {**metadata, "versioned": False}, sparse=sparse)
    return collection, True


def stream_into(source: VectorSource, documents: Iterable[Mapping[str, Any]], engine: VectorEngine, target: str,
                identity: ModelIdentity, id_field: str, text_field: str, batch_size: int,
                show_progress_bar: bool) -> tuple[int, int, int, set[str]]:
    """Embed and upsert every document; return (written, skipped, distinct documents, payload fields)."""
    model_fields = {MODEL_NAME_KEY: identity.model_name, MODEL_HASH_KEY: identity.weights_sha256}
    # Only a collection that already holds points can hold some of these documents unchanged.
    check_stored = engine.count(target) > 0
    first_row_of: dict[str, int] = {}
    fields: set[str] = set()
    written = skipped = 0
    total = len(documents) if isinstance(documents, Sized) else None
    pending: Future | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="textdml-upsert") as writer, \
            tqdm(total=total, desc=f"Indexing into {target}", unit=source.unit, disable=not show_progress_bar) as progress:
        try:
            for batch_number, rows in enumerate(batches(documents, batch_size)):
                payloads: dict[str, dict[str, Any]] = {}
                for row_number, row in enumerate(rows, start=batch_number * batch_size):
                    payload = document_payload(row, row_number, id_field, text_field, model_fields)
                    if source.check_row is not None:
                        source.check_row(payload, row_number)
                    doc_id = str(payload[id_field])
                    if doc_id in first_row_of:
                        raise ValueError(f"row {row_number}: {id_field!r} {doc_id!r} repeats row {first_row_of[doc_id]}")
                    first_row_of[doc_id] = row_number
                    fields.update(payload)
                    payloads[point_id(doc_id)] = payload
                unchanged = unchanged_point_ids(engine, target, payloads) if check_stored else set()
                todo = {pid: payload for pid, payload in payloads.items() if pid not in unchanged}
                skipped += len(unchanged)
                if todo:
                    points = as_points(todo, source.embed(list(todo.values())))
                    if pending is not None:
                        pending.result()  # one chunk in flight: memory stays bounded
                    pending = writer.submit(engine.upsert, target, points)
                    written += len(points)
                progress.update(len(rows))
        finally:
            if pending is not None:
                pending.result()  # what was encoded is stored before any error propagates
    return written, skipped, len(first_row_of), fields


def as_points(payloads: Mapping[str, dict[str, Any]], vectors: Mapping[str, np.ndarray]) -> list[Point]:
    """Points of a chunk: one unnamed vector each, or one of every named vector."""
    if set(vectors) == {DEFAULT_VECTOR}:
        return [Point(pid, vector, payload)
                for (pid, payload), vector in zip(payloads.items(), vectors[DEFAULT_VECTOR], strict=True)]
    names = list(vectors)
    return [Point(pid, dict(zip(names, row, strict=True)), payload)
            for (pid, payload), *row in zip(payloads.items(), *vectors.values(), strict=True)]
