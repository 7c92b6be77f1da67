"""The small interface every vector engine offers textdml, and the plain data it speaks.

Two engines implement it: :class:`~textdml.index.edge.EdgeEngine` (Qdrant Edge, the Qdrant engine
in-process, a shard per collection under one folder; the default) and
:class:`~textdml.index.client.ClientEngine` (qdrant-client: a Qdrant server by URL, or
qdrant-client's local mode by path). Indexing, search, versioned collections and evaluation are
written once against this interface, and one parametrized test suite runs on both engines.

Filters are qdrant-client's ``models.Filter`` (what Qdrant users already write); the Edge engine
translates them. Point ids are strings (UUIDs) or ints.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

Distance = Literal["cosine", "dot"]
Quantization = Literal["none", "scalar", "binary", "product"]
PayloadIndexType = Literal["keyword", "integer", "float", "bool", "text", "datetime", "uuid"]
# The name of the single unnamed vector (named vectors are used by image-text collections).
DEFAULT_VECTOR = ""
# The name of the sparse vector a hybrid collection stores beside its dense one (``index.sparse``).
SPARSE_VECTOR = "sparse"
SparseModifier = Literal["idf", "none"]
FusionMethod = Literal["rrf", "dbsf"]


@dataclass(frozen=True)
class VectorSpec:
    """One vector per point: its size and the distance it is compared with."""

    size: int
    distance: Distance

    def describe(self) -> str:
        return f"size={self.size}, distance={self.distance}"


@dataclass(frozen=True)
class SparseSpec:
    """A named sparse vector: ``idf`` makes the engine weight each term by its inverse document
    frequency at query time (BM25: documents store term frequencies only), ``none`` scores the raw
    dot product (a learned sparse model's weights)."""

    modifier: SparseModifier = "none"

    def describe(self) -> str:
        return f"sparse, modifier={self.modifier}"


@dataclass(frozen=True)
class SparseValues:
    """One sparse vector: the ids of its non-zero terms (ascending) and their weights."""

    indices: np.ndarray  # (N,) int64
    values: np.ndarray  # (N,) float32

    def __post_init__(self) -> None:
        if len(self.indices) != len(self.values):
            raise ValueError(f"a sparse vector needs one value per index, got {len(self.indices)} indices and "
                             f"{len(self.values)} values")


@dataclass(frozen=True)
class Fusion:
    """How a hybrid search merges the dense and the sparse ranking (``index.fusion``).

    ``rrf``: reciprocal rank fusion, ``sum_i w_i / (rrf_k + rank_i)``; weighted natively by both
    engines. ``dbsf``: distribution-based score fusion (each leg's scores normalised by their mean
    +- 3 standard deviations, then summed); the engines have no weighted DBSF, so with unequal
    ``weights`` the two legs are searched apart and fused here by the same formula.

    Attributes:
        method: ``rrf`` or ``dbsf``.
        weights: ``(dense, sparse)``; None: equal.
        rrf_k: the RRF rank constant (Qdrant's default: 2).
        prefetch: candidates each leg hands the fusion (at least the requested ``top_k``).
    """

    method: FusionMethod = "rrf"
    weights: tuple[float, float] | None = None
    rrf_k: int = 2
    prefetch: int = 100

    def __post_init__(self) -> None:
        if self.method not in ("rrf", "dbsf"):
            raise ValueError(f"index.fusion must be 'rrf' or 'dbsf', got {self.method!r}")
        if self.weights is not None:
            weights = tuple(self.weights)
            if len(weights) != 2 or any(not w >= 0 for w in weights) or sum(weights) <= 0:
                raise ValueError(f"index.fusion_weights must be two non-negative numbers [dense, sparse], not both 0; "
                                 f"got {list(self.weights)}")
            object.__setattr__(self, "weights", (float(weights[0]), float(weights[1])))
        if self.rrf_k < 1:
            raise ValueError(f"index.rrf_k must be >= 1, got {self.rrf_k}")
        if self.prefetch < 1:
            raise ValueError(f"index.prefetch must be >= 1, got {self.prefetch}")

    @property
    def weighted(self) -> bool:
        return self.weights is not None and self.weights[0] != self.weights[1]


@dataclass(frozen=True)
class CollectionOptions:
    """How a collection stores and indexes its vectors (see the README's index table).

    Attributes:
        hnsw_m: edges per node of the HNSW graph (more: better recall, more memory).
        hnsw_ef_construct: candidates kept while building the graph (more: better graph, slower build).
        hnsw_threshold: collections with fewer points are searched exactly and get no graph.
        on_disk: keep the original vectors memory-mapped on disk instead of in RAM.
        quantization: compress the vectors searched first; the originals rescore the best hits.
        payload_indexes: payload field -> index type, for fast filtered search on those fields.
    """

    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    hnsw_threshold: int = 20_000
    on_disk: bool = False
    quantization: Quantization = "none"
    payload_indexes: Mapping[str, PayloadIndexType] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.hnsw_m < 2 or self.hnsw_ef_construct < 4:
            raise ValueError(f"index.hnsw_m must be >= 2 and index.hnsw_ef_construct >= 4, got {self.hnsw_m} and "
                             f"{self.hnsw_ef_construct}")
        if self.hnsw_threshold < 0:
            raise ValueError(f"index.hnsw_threshold must be >= 0 points, got {self.hnsw_threshold}")
        if self.quantization not in ("none", "scalar", "binary", "product"):
            raise ValueError(f"index.quantization must be one of none, scalar, binary, product; got {self.quantization!r}")
        known = ("keyword", "integer", "float", "bool", "text", "datetime", "uuid")
        for name, kind in self.payload_indexes.items():
            if kind not in known:
                raise ValueError(f"index.payload_indexes.{name}: unknown index type {kind!r}; use one of {list(known)}")


@dataclass(frozen=True)
class SearchOptions:
    """Search-time settings: exact (brute force) or HNSW with ``ef``; quantized-search rescoring."""

    exact: bool = False
    ef: int | None = 256
    rescore: bool = True
    oversampling: float | None = 2.0


DEFAULT_SEARCH = SearchOptions()


@dataclass
class Point:
    """A point to write: id, vector (or named vectors, sparse ones as :class:`SparseValues`), payload."""

    id: str | int
    vector: np.ndarray | Mapping[str, np.ndarray | SparseValues]
    payload: dict[str, Any]


@dataclass(frozen=True)
class Record:
    """A stored point as read back (vector only when asked for)."""

    id: str
    payload: dict[str, Any]
    vector: Any = None


@dataclass(frozen=True)
class ScoredRecord:
    """A search hit: the point id, its score and its payload."""

    id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class CollectionInfo:
    """What a collection holds: its vectors (``{"": spec}`` for one unnamed vector), points, metadata."""

    name: str
    vectors: Mapping[str, VectorSpec]
    points: int
    metadata: Mapping[str, Any]
    sparse: Mapping[str, SparseSpec] = field(default_factory=dict)

    def describe_vectors(self) -> str:
        return describe_vectors(self.vectors) + "".join(f", sparse vector {name!r} ({spec.modifier})"
                                                         for name, spec in sorted(self.sparse.items()))


def describe_vectors(vectors: Mapping[str, VectorSpec]) -> str:
    """``size=384, distance=cosine`` for one unnamed vector, ``named vectors image (...), text (...)`` else."""
    if set(vectors) == {DEFAULT_VECTOR}:
        return vectors[DEFAULT_VECTOR].describe()
    return "named vectors " + ", ".join(f"{name} ({spec.describe()})" for name, spec in sorted(vectors.items()))


class IndexLockedError(ValueError):
    """Another process has the index (or collection) open for writing."""


class VectorEngine(abc.ABC):
    """Collections of vectors with payloads, searched by similarity, plus aliases that name them.

    Every method takes real collection names except :meth:`resolve`, which maps an alias (or a
    collection name) to the collection behind it. Implementations raise ``ValueError`` subclasses
    for anything the user can fix (unknown names, a locked index, an unreachable server).
    """

    #: A short name for messages and listings ("edge", "client").
    kind: str = ""

    # ------------------------------------------------------------------ collections
    @abc.abstractmethod
    def list_collections(self) -> list[str]:
        """Names of all collections, sorted."""

    @abc.abstractmethod
    def collection_exists(self, name: str) -> bool:
        """Whether a collection (not an alias) of this name exists."""

    @abc.abstractmethod
    def create_collection(self, name: str, vectors: Mapping[str, VectorSpec], options: CollectionOptions,
                          metadata: Mapping[str, Any], sparse: Mapping[str, SparseSpec] | None = None) -> None:
        """Create an empty collection (with ``sparse`` named sparse vectors too); an existing name is an error."""

    @abc.abstractmethod
    def collection_info(self, name: str, count: bool = True) -> CollectionInfo:
        """Vectors, point count and metadata of collection ``name``.

        ``count=False`` may take the count from the metadata instead of the collection, so that
        listing versions never opens (and on Edge, locks) a shard that another process may be using.
        """

    @abc.abstractmethod
    def set_metadata(self, name: str, metadata: Mapping[str, Any]) -> None:
        """Replace the textdml metadata of a collection (model identity, status, fields)."""

    @abc.abstractmethod
    def delete_collection(self, name: str) -> None:
        """Remove a collection and its points."""

    # ------------------------------------------------------------------ points
    @abc.abstractmethod
    def upsert(self, name: str, points: Sequence[Point]) -> None:
        """Write points (replacing those with the same ids); durable when it returns."""

    @abc.abstractmethod
    def retrieve(self, name: str, ids: Sequence[str | int], with_vectors: bool = False) -> list[Record]:
        """The stored points among ``ids`` (missing ids are left out)."""

    @abc.abstractmethod
    def count(self, name: str, filter: Any = None) -> int:
        """Exact number of points (matching ``filter``, a qdrant-client ``Filter``)."""

    @abc.abstractmethod
    def search(self, name: str, vectors: np.ndarray, top_k: int, filter: Any = None,
               using: str = DEFAULT_VECTOR, options: SearchOptions = DEFAULT_SEARCH) -> list[list[ScoredRecord]]:
        """The ``top_k`` nearest points of each row of ``vectors`` (``(Q, D)``), best first."""

    @abc.abstractmethod
    def search_sparse(self, name: str, queries: Sequence[SparseValues], top_k: int, filter: Any = None,
                      using: str = SPARSE_VECTOR) -> list[list[ScoredRecord]]:
        """The ``top_k`` best points of each sparse query by the sparse vector ``using``, best first."""

    def search_hybrid(self, name: str, vectors: np.ndarray, queries: Sequence[SparseValues], top_k: int,
                      fusion: Fusion, filter: Any = None, options: SearchOptions = DEFAULT_SEARCH,
                      using: str = DEFAULT_VECTOR, sparse_using: str = SPARSE_VECTOR) -> list[list[ScoredRecord]]:
        """The ``top_k`` best points of each query by the fusion of its dense (``vectors`` row) and
        sparse ranking, each leg prefetching ``max(top_k, fusion.prefetch)`` candidates."""
        if len(vectors) != len(queries):
            raise ValueError(f"a hybrid search needs one dense and one sparse query each, got {len(vectors)} and "
                             f"{len(queries)}")
        prefetch = max(top_k, fusion.prefetch)
        if fusion.method == "dbsf" and fusion.weighted:
            from textdml.index.fusion import weighted_dbsf

            dense = self.search(name, vectors, prefetch, filter=filter, using=using, options=options)
            sparse = self.search_sparse(name, queries, prefetch, filter=filter, using=sparse_using)
            return [weighted_dbsf([d, s], fusion.weights, top_k) for d, s in zip(dense, sparse, strict=True)]
        return self.fused_query(name, vectors, queries, top_k, prefetch, fusion, filter, options, using, sparse_using)

    @abc.abstractmethod
    def fused_query(self, name: str, vectors: np.ndarray, queries: Sequence[SparseValues], top_k: int, prefetch: int,
                    fusion: Fusion, filter: Any, options: SearchOptions, using: str,
                    sparse_using: str) -> list[list[ScoredRecord]]:
        """The engine's own fusion (RRF, weighted or not; DBSF) of a dense and a sparse prefetch."""

    @abc.abstractmethod
    def scroll(self, name: str, limit: int = 256, offset: Any = None, filter: Any = None,
               with_vectors: bool = False) -> tuple[list[Record], Any]:
        """One page of points and the offset of the next page (None at the end)."""

    @abc.abstractmethod
    def delete(self, name: str, ids: Sequence[str | int]) -> None:
        """Remove points by id."""

    def finish(self, name: str, options: CollectionOptions, show_progress_bar: bool = True) -> bool:
        """Make the collection fast to search after a bulk write (build HNSW if large enough).

        Returns whether an index was built. The default does nothing (a server indexes by itself).
        """
        return False

    def iterate(self, name: str, page_size: int = 1024, filter: Any = None, with_vectors: bool = False) -> Iterator[Record]:
        """Every point of a collection, page by page."""
        offset = None
        while True:
            records, offset = self.scroll(name, limit=page_size, offset=offset, filter=filter, with_vectors=with_vectors)
            yield from records
            if offset is None:
                return

    # ------------------------------------------------------------------ aliases
    @abc.abstractmethod
    def aliases(self) -> dict[str, str]:
        """Alias -> collection."""

    @abc.abstractmethod
    def set_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` in one atomic step (a reader sees the old or the new target)."""

    @abc.abstractmethod
    def delete_alias(self, alias: str) -> None:
        """Remove an alias (the collection stays)."""

    def resolve(self, name: str) -> str:
        """The collection behind ``name`` (an alias or a collection); unknown names list what exists."""
        aliases = self.aliases()
        if name in aliases:
            return aliases[name]
        if self.collection_exists(name):
            return name
        raise ValueError(f"no collection or alias {name!r} in {self.location}; {self.describe_contents()}")

    def describe_contents(self) -> str:
        """``existing aliases: ...; collections: ...`` for error messages."""
        aliases, collections = self.aliases(), self.list_collections()
        if not aliases and not collections:
            return "it holds no collection yet: run `textdml index` first"
        parts = []
        if aliases:
            parts.append("aliases: " + ", ".join(f"{a} -> {c}" for a, c in sorted(aliases.items())))
        if collections:
            parts.append("collections: " + ", ".join(collections))
        return "existing " + "; ".join(parts)

    # ------------------------------------------------------------------ lifetime
    def writing(self) -> contextlib.AbstractContextManager[None]:
        """Held for a whole indexing run; an engine where two writers would clash raises
        :class:`IndexLockedError` for the second one. A server orders writes itself: no lock."""
        return contextlib.nullcontext()

    @property
    def local_folder(self) -> Path | None:
        """The folder on this machine that holds the data (its disk must have room), or None (a server, memory)."""
        return None

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the engine keeps its data, for messages (a folder or a URL)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release files, locks and connections."""

    def __enter__(self) -> VectorEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
