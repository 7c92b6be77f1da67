"""Opening an index, and the public indexing API in one place.

``open_client(path="vectors/")`` opens (or creates) a Qdrant Edge index folder, the default engine;
``open_client(url=...)`` a Qdrant server; ``open_client(path=..., engine="client")`` qdrant-client's
local mode. All return a :class:`~textdml.index.engine.VectorEngine`, which
:func:`index_documents`, :func:`search` and :func:`evaluate_through_collection` take.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from textdml.index.documents import (
    MODEL_HASH_KEY,
    MODEL_NAME_KEY,
    POINT_ID_NAMESPACE,
    batches,
    document_payload,
    encode_vectors,
    point_id,
    unchanged_point_ids,
)
from textdml.index.engine import DEFAULT_VECTOR, CollectionOptions, Fusion, SearchOptions, VectorEngine, VectorSpec
from textdml.index.indexing import IndexReport, as_engine, check_vectors, index_documents
from textdml.index.searching import SearchHit, evaluate_through_collection, search, to_hit, warn_if_other_model

if TYPE_CHECKING:
    from textdml.config import IndexConfig
    from textdml.index.sparse import SparseSource

__all__ = [
    "MODEL_HASH_KEY", "MODEL_NAME_KEY", "POINT_ID_NAMESPACE", "IndexReport", "SearchHit", "batches",
    "document_payload", "encode_vectors", "ensure_collection", "evaluate_through_collection", "index_documents",
    "open_client", "open_index", "point_id", "search", "to_hit", "unchanged_point_ids", "warn_if_other_model",
]

Engine = Literal["edge", "client"]


def open_client(path: str | os.PathLike | None = None, url: str | None = None, api_key: str | None = None,
                engine: Engine | None = None, create: bool = True, timeout: float = 5.0) -> VectorEngine:
    """A vector engine: a Qdrant Edge folder with ``path`` (default), a Qdrant server with ``url``.

    Args:
        path: an index folder; ``":memory:"`` for a throw-away in-memory index (qdrant-client).
        url: a Qdrant server, e.g. ``https://xyz.cloud.qdrant.io:6333``.
        api_key: the server's key; default ``$QDRANT_API_KEY`` (never written anywhere).
        engine: ``"edge"`` or ``"client"`` (qdrant-client's local mode for a ``path``); default:
            ``client`` for a URL or ``":memory:"``, else ``edge`` unless the folder already holds a
            qdrant-client store.
        create: make a missing folder; ``False`` (search) makes a mistyped path an error that lists
            the folders that exist.
        timeout: seconds for each server request (an unreachable server fails after it).

    Example:
        >>> engine = open_client(path=":memory:")
        >>> engine.list_collections()
        []
    """
    if (path is None) == (url is None):
        raise ValueError("give exactly one of path= (an embedded index: a folder, or ':memory:') or url= (a Qdrant "
                         f"server); got path={path!r}, url={url!r}")
    from textdml.index.client import ClientEngine

    if url is not None:
        if engine == "edge":
            raise ValueError("index.engine=edge stores vectors in a folder (index.path); a server (index.url) needs "
                             "index.engine=client")
        return ClientEngine(url=url, api_key=api_key, timeout=timeout)
    if api_key is not None:
        raise ValueError("api_key authenticates to a server given by url=; the embedded mode (path=) has no key")
    if str(path) == ":memory:":
        return ClientEngine(path=":memory:")
    if engine is None:
        folder = Path(path)
        engine = "client" if (folder / "collection").is_dir() or (folder / "meta.json").exists() else "edge"
    if engine == "client":
        return ClientEngine(path=path, create=create)
    if engine != "edge":
        raise ValueError(f"index.engine must be 'edge' or 'client', got {engine!r}")
    from textdml.index.edge import EdgeEngine

    return EdgeEngine(path, create=create)


def open_index(config: IndexConfig, create: bool = True) -> VectorEngine:
    """The engine an ``index`` config section names (``index.url`` wins over ``index.path``)."""
    if config.url:
        return open_client(url=config.url, api_key=config.api_key, engine="client", timeout=config.timeout)
    if not config.path:
        raise ValueError("set index.path (a folder for the embedded index) or index.url (a Qdrant server)")
    if config.api_key:  # never ignored in silence: the user believes the index is protected by it
        raise ValueError(f"index.api_key is set, but the index is the embedded folder index.path={config.path!r}, "
                         "which has no key: index.api_key authenticates to a Qdrant server; drop index.api_key, "
                         "or set index.url to the server")
    return open_client(path=config.path, engine=config.engine, create=create)


def collection_options(config: IndexConfig) -> CollectionOptions:
    """The :class:`CollectionOptions` of an ``index`` config section."""
    return CollectionOptions(hnsw_m=config.hnsw_m, hnsw_ef_construct=config.hnsw_ef_construct,
                             hnsw_threshold=config.hnsw_threshold, on_disk=config.on_disk,
                             quantization=config.quantization, payload_indexes=dict(config.payload_indexes))


def search_options(config: IndexConfig) -> SearchOptions:
    """The :class:`SearchOptions` of an ``index`` config section."""
    return SearchOptions(ef=config.search_ef, rescore=config.rescore, oversampling=config.oversampling)


def fusion_settings(config: IndexConfig) -> Fusion:
    """The :class:`Fusion` of an ``index`` config section (``fusion``, ``fusion_weights``, ``rrf_k``, ``prefetch``)."""
    weights = tuple(config.fusion_weights) if config.fusion_weights else None
    return Fusion(config.fusion, weights, config.rrf_k, config.prefetch)  # type: ignore[arg-type]


def sparse_source(config: IndexConfig) -> SparseSource | None:
    """The sparse source ``index.sparse`` names (with ``index.bm25``), or None (dense only)."""
    from textdml.index.sparse import load_sparse_source

    return load_sparse_source(config.sparse, config.bm25)


def ensure_collection(
    engine: VectorEngine,
    name: str,
    vector_size: int,
    similarity: Literal["cosine", "dot"],
    recreate: bool = False,
    options: CollectionOptions | None = None,
) -> bool:
    """Create plain collection ``name`` for vectors of ``vector_size`` scored by ``similarity``, unless it exists.

    An existing collection is kept as it is when its size and distance match, and is an error
    otherwise: nothing is overwritten unless ``recreate=True``, which deletes it first.

    Returns:
        Whether the collection was created.

    Example:
        >>> engine = open_client(path=":memory:")
        >>> ensure_collection(engine, "docs", vector_size=8, similarity="cosine")
        True
        >>> ensure_collection(engine, "docs", vector_size=8, similarity="cosine")
        False
    """
    if similarity not in ("cosine", "dot"):
        raise ValueError(f"similarity must be one of ['cosine', 'dot'], got {similarity!r}")
    engine = as_engine(engine)
    spec = VectorSpec(vector_size, similarity)
    if recreate and engine.collection_exists(name):
        engine.delete_collection(name)
    if engine.collection_exists(name):
        check_vectors(engine, name, {DEFAULT_VECTOR: spec}, "pass recreate=True to delete it and index again")
        return False
    engine.create_collection(name, {DEFAULT_VECTOR: spec}, options or CollectionOptions(), {})
    return True
