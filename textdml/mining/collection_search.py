"""Opening a Qdrant collection for mining: create, reuse or re-encode the version that is searched.

Mining itself only searches; the collection management lives here (a run calls it from
:mod:`textdml.mining.run`). :func:`open_collection_searcher` gives a
:class:`~textdml.mining.search.CollectionSearcher` over a collection (a versioned alias or a plain
collection of :mod:`textdml.index`):

- **the collection exists**: its live version is searched as it is, after checking that it was
  indexed by the mining model (:func:`~textdml.index.indexing.check_same_model`: another model is
  an error naming both, a warning with ``force``). Nothing is written into it.
- **it does not exist**: the task's documents are indexed into a new version (document id: a hash
  of the text, so the same text always gets the same point) and published under the name.
- **re-mining** (``own_versions``: the versions earlier minings of the run searched): when the live
  version holds earlier weights of the run's own model, its documents and the task's are encoded
  again with the current weights into a NEW version, which goes live. One of them written with the
  current weights is searched again instead (a resumed run). A live version that the run never
  mined from stays an identity error.

The mining corpus is the collection's documents plus the task's (the given corpus and the
positives). Positions index :attr:`CollectionSearcher.corpus`: the task's documents first, in
their order, then the documents only the collection holds, read in by ``scroll`` (their text
field), so every hit maps to a position by its text and documents the task lacks are candidates
too, as they are in search. Documents of the task that the collection lacks (typically the train
positives, beside a collection of other documents) are encoded and searched exactly in memory,
and both hit lists are merged by score: the candidates come from the whole corpus, without writing
into a collection that the run did not create.

A collection holding one text under two ids returns it once (the better hit). The texts are held
in memory (as in-memory mining holds them), the vectors stay in the collection.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from textdml.evaluation.retrieval import encode_for_search
from textdml.index.documents import MODEL_HASH_KEY, MODEL_NAME_KEY
from textdml.index.engine import CollectionOptions, Fusion, SearchOptions, VectorEngine
from textdml.index.indexing import as_engine, index_documents
from textdml.index.searching import Target, open_target, query_sparse_source, resolve_mode
from textdml.index.versions import list_versions
from textdml.mining.search import CollectionSearcher, MiningMode, text_key
from textdml.models.identity import ModelIdentity, model_identity

if TYPE_CHECKING:
    from textdml.index.sparse import SparseSource
    from textdml.models.protocols import SupportsEncode

logger = logging.getLogger(__name__)

__all__ = ["CollectionSearcher", "open_collection_searcher"]  # CollectionSearcher: its old import path


def open_collection_searcher(
    model: SupportsEncode,
    engine: VectorEngine,
    collection: str,
    documents: Sequence[str],
    *,
    force: bool = False,
    own_versions: Collection[str] = (),
    search_options: SearchOptions | None = None,
    index_options: CollectionOptions | None = None,
    id_field: str = "id",
    text_field: str = "text",
    batch_size: int = 64,
    show_progress_bar: bool = True,
    mode: MiningMode = "dense",
    fusion: Fusion | None = None,
    sparse: SparseSource | str | None = None,
) -> CollectionSearcher:
    """A searcher over ``collection``, indexing ``documents`` into a new version when it is missing.

    Args:
        model: the mining encoder (queries are encoded with its "query" prompt).
        engine: from :func:`textdml.index.open_client` (Edge or qdrant-client).
        collection: an alias of versioned collections, or a plain collection.
        documents: the task's unique documents (the given corpus, then the positives).
        force: search a collection indexed by another model (a warning instead of the error).
        own_versions: versions this run mined from before (re-mining): when the live version is one
            of them and holds other weights, a new version is encoded with the current ones.
        search_options: exact search (``SearchOptions(exact=True)``, equal to in-memory mining) or
            HNSW with ``ef`` (what search will see); default HNSW with ``ef=256``.
        index_options: HNSW, quantization and on-disk settings of a version this writes.
        id_field / text_field: payload fields of a version this writes (an existing collection's
            text field comes from its metadata).
        batch_size: texts per forward pass.
        show_progress_bar: indexing progress bars.
        mode: ``dense``, or ``hybrid`` / ``sparse`` over a hybrid collection: the candidates are the
            top of the fused (sparse) ranking, scored by the model (see :class:`CollectionSearcher`).
        fusion: how hybrid mode fuses the legs (``index.fusion``).
        sparse: the sparse source (``index.sparse``) of a version this writes, and of the queries
            (checked against the collection's; default there: the one it records).

    Returns:
        A :class:`CollectionSearcher`; its ``corpus`` is the mining corpus its positions index.

    Raises:
        ValueError: a collection of another model (unless ``force``) or vector size; points without
            the text field.
    """
    engine = as_engine(engine)
    identity = model_identity(model)
    live = engine.aliases().get(collection)
    stored = stored_identity(engine, live) if live is not None else None
    searched, indexed = collection, False
    if stored is None or not stored.same_vectors(identity):
        own = own_version_of(engine, collection, identity, own_versions)
        if own is not None:  # a resumed run: its earlier mining with these weights, no longer live
            searched = own
        elif live is not None and live in own_versions and stored is not None:  # a re-mine: the weights moved on
            encode_version(model, engine, collection, documents, live, id_field, text_field, index_options,
                           batch_size, show_progress_bar, sparse=sparse_of_version(engine, live, sparse))
            indexed = True
        elif live is None and not engine.collection_exists(collection):
            encode_version(model, engine, collection, documents, None, id_field, text_field, index_options,
                           batch_size, show_progress_bar, sparse=sparse)
            indexed = True
    # Any other model's collection stops here (or warns, with force).
    target = dataclasses.replace(open_target(engine, searched, model, force=force, verb="mine"), name=collection)
    resolve_mode(target, mode)  # a hybrid mode on a dense-only collection names index.sparse
    source = query_sparse_source(target, sparse, force, "mine") if mode != "dense" else None
    info = engine.collection_info(target.collection)
    text_field = str(info.metadata.get("text_field") or text_field)
    corpus = list(documents)
    position = {text: i for i, text in enumerate(corpus)}
    in_collection: set[int] = set()
    for text in collection_texts(engine, target, text_field):
        if text not in position:
            position[text] = len(corpus)
            corpus.append(text)
        in_collection.add(position[text])
    outside = [i for i in range(len(documents)) if i not in in_collection]
    outside_vectors = None
    if outside:
        logger.info("%d of the %d task documents are not in collection %r: searching them exactly in memory beside "
                    "it", len(outside), len(documents), collection)
        outside_vectors = encode_for_search(model, [corpus[i] for i in outside], batch_size, False, "document")
    if len(corpus) > len(documents):
        logger.info("collection %r adds %d documents the task lacks to the mining corpus", collection,
                    len(corpus) - len(documents))
    theirs = info.metadata.get("identity")
    return CollectionSearcher(engine, target, text_field, corpus, position, outside, outside_vectors,
                              search_options or SearchOptions(), indexed=indexed, points=info.points,
                              identity=ModelIdentity.from_dict(theirs) if theirs else None, batch_size=batch_size,
                              mode=mode, fusion=fusion, sparse_source=source)


def sparse_of_version(engine: VectorEngine, version: str, sparse: SparseSource | str | None) -> Any:
    """A re-mine keeps the sparse vectors of the version it replaces: the source given, else the one it records."""
    if sparse is not None:
        return sparse
    stored = engine.collection_info(version, count=False).metadata.get("sparse")
    if not stored:
        return None
    from textdml.index.sparse import source_of_collection

    return source_of_collection(stored, version)


def own_version_of(engine: VectorEngine, collection: str, identity: ModelIdentity,
                   own_versions: Collection[str]) -> str | None:
    """The newest complete version among ``own_versions`` written with exactly these weights, if any."""
    if not own_versions:
        return None
    matching = [v.name for v in list_versions(engine, collection) if v.name in own_versions and v.status == "ready"
                and v.identity is not None and v.identity.same_vectors(identity)]
    return matching[-1] if matching else None


def encode_version(model: SupportsEncode, engine: VectorEngine, collection: str, documents: Sequence[str],
                   previous: str | None, id_field: str, text_field: str, options: CollectionOptions | None,
                   batch_size: int, show_progress_bar: bool, sparse: SparseSource | str | None = None) -> None:
    """Index a new version of ``collection`` and publish it: the ``previous`` version's documents
    re-encoded (same ids and fields) and the task's documents it lacks (a text hash as id)."""
    if previous is not None:  # the new version keeps the fields of the one it replaces
        metadata = engine.collection_info(previous, count=False).metadata
        id_field = str(metadata.get("id_field") or id_field)
        text_field = str(metadata.get("text_field") or text_field)
    rows = version_documents(engine, previous, documents, id_field, text_field)
    report = index_documents(model, rows, engine, collection, id_field=id_field, text_field=text_field,
                             show_progress_bar=show_progress_bar, options=options, encode_batch_size=batch_size,
                             replacing=previous, sparse=sparse)
    logger.info("indexed %d documents into %s for mining%s", report.points, report.version,
                f" (re-encoding {previous} with the current weights)" if previous else "")


def stored_identity(engine: VectorEngine, version: str) -> ModelIdentity | None:
    """The model that indexed ``version``, from its metadata (None when it has none)."""
    theirs = engine.collection_info(version, count=False).metadata.get("identity")
    return ModelIdentity.from_dict(theirs) if theirs else None


def collection_texts(engine: VectorEngine, target: Target, text_field: str) -> Iterator[str]:
    """The text of every point of the searched version, page by page."""
    for record in engine.iterate(target.collection):
        text = record.payload.get(text_field)
        if not isinstance(text, str):
            raise ValueError(f"point {record.id} of collection {target.name!r} ({target.collection}) has no text in "
                             f"its {text_field!r} payload field: mining needs the documents' texts; index them with "
                             "text_field= naming the text")
        yield text


def version_documents(engine: VectorEngine, previous: str | None, documents: Sequence[str], id_field: str,
                      text_field: str) -> Iterator[dict[str, Any]]:
    """The rows of a new version, read lazily: ``previous``'s payloads, then the task's documents it lacks."""
    seen: set[str] = set()
    if previous is not None:
        for record in engine.iterate(previous):
            seen.add(record.payload.get(text_field))
            yield {key: value for key, value in record.payload.items() if key not in (MODEL_NAME_KEY, MODEL_HASH_KEY)}
    for text in documents:
        if text not in seen:
            yield {id_field: text_key(text).hex(), text_field: text}
