"""Qdrant Edge (``qdrant-edge-py``): the Qdrant engine in-process, one shard per collection.

Layout of an Edge index folder (``index.path``)::

    qdrant_data/
      textdml_index.json        {"engine": "edge", "format": 1}: marks the folder as an Edge index
      aliases.json              {"docs": "docs__1a2b3c4d__20261201T224501"}; replaced atomically
      .writer.lock              held (flock) by the one process writing to this index
      .aliases.lock             held for the few milliseconds of an alias change
      docs__1a2b3c4d__2026.../  one Edge shard (wal/, segments/, edge_config.json) ...
        textdml.json            ... and its textdml metadata (model identity, status, fields)

An alias change writes ``aliases.json.tmp``, fsyncs it and renames it over ``aliases.json``: a
rename is atomic, so a reader (or a process killed mid-swap) sees the old or the new mapping, never
none. Edge opens a shard for one process at a time (its WAL is locked); a second process gets
:class:`~textdml.index.engine.IndexLockedError`. Many concurrent readers need a server
(``index.engine: client`` with ``index.url``).

HNSW: points are written to a plain segment (exact search) and the graph is built once, at the end
of an indexing run, by :meth:`EdgeEngine.finish`, only for collections of at least
``CollectionOptions.hnsw_threshold`` points (see the README for the measurements behind the default).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from textdml.index.engine import (
    DEFAULT_SEARCH,
    DEFAULT_VECTOR,
    SPARSE_VECTOR,
    CollectionInfo,
    CollectionOptions,
    Fusion,
    IndexLockedError,
    Point,
    Record,
    ScoredRecord,
    SearchOptions,
    SparseSpec,
    SparseValues,
    VectorEngine,
    VectorSpec,
)
from textdml.index.filters import to_edge_filter

logger = logging.getLogger(__name__)

MARKER_FILE = "textdml_index.json"
ALIASES_FILE = "aliases.json"
METADATA_FILE = "textdml.json"
SHARD_CONFIG = "edge_config.json"
FORMAT = 1
# A plain segment larger than this is never searched by a graph before finish() builds one.
NEVER_INDEX_KB = 2**40


def edge_distance(distance: str) -> Any:
    import qdrant_edge as qe

    return {"cosine": qe.Distance.Cosine, "dot": qe.Distance.Dot}[distance]


def as_point_id(point_id: Any) -> str:
    return str(point_id)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write, fsync, rename over ``path``, fsync the folder: readers see old or new, whole."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def describe_folder(path: Path) -> str:
    """What is at and around a path that does not hold an index, for error messages."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return f"the folder {str(parent)!r} does not exist either"
    entries = sorted(p.name for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))
    indexes = [name for name in entries if (parent / name / MARKER_FILE).exists()]
    if indexes:
        return f"index folders in {str(parent)!r}: {indexes}"
    return f"folders in {str(parent)!r}: {entries[:20] or 'none'}"


class EdgeEngine(VectorEngine):
    """Collections as Qdrant Edge shards in one folder (see the module docstring for the layout).

    Args:
        path: the index folder.
        create: make the folder if it is missing (indexing). ``False`` (search, listing) makes a
            missing folder an error that lists what exists next to it, so a mistyped
            ``index.path`` never leaves an empty index behind.
    """

    kind = "edge"

    def __init__(self, path: str | os.PathLike, create: bool = True):
        try:
            import qdrant_edge  # noqa: F401
        except ImportError as err:  # pragma: no cover - a runtime dependency
            raise ValueError("index.engine=edge needs the qdrant-edge-py package: pip install qdrant-edge-py") from err
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise ValueError(f"index.path {str(self.path)!r} does not exist (nothing was indexed there); "
                                 f"{describe_folder(self.path)}. Fix index.path, or run `textdml index` first")
            self.path.mkdir(parents=True)
        if not self.path.is_dir():
            raise ValueError(f"index.path {str(self.path)!r} is a file, not an index folder")
        marker = self.path / MARKER_FILE
        if not marker.exists():
            if (self.path / "collection").is_dir() or (self.path / "meta.json").exists():
                raise ValueError(f"{str(self.path)!r} holds a qdrant-client local-mode store, not a Qdrant Edge index: "
                                 "open it with index.engine=client, or pick another index.path")
            if any(p for p in self.path.iterdir() if not p.name.startswith(".")):
                raise ValueError(f"{str(self.path)!r} is not empty and is no textdml Edge index (no {MARKER_FILE}); "
                                 "pick an empty or new index.path")
            if not create:
                raise ValueError(f"index.path {str(self.path)!r} is empty: nothing was indexed there yet; "
                                 f"{describe_folder(self.path)}")
            write_json_atomic(marker, {"engine": "edge", "format": FORMAT})
        self._shards: dict[str, Any] = {}
        self._writer_lock: Any = None

    # ------------------------------------------------------------------ helpers
    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def local_folder(self) -> Path | None:
        return self.path

    def _dir(self, name: str) -> Path:
        if not name or "/" in name or name.startswith(".") or name in (ALIASES_FILE, MARKER_FILE):
            raise ValueError(f"{name!r} is not a valid collection name (no '/', no leading '.')")
        return self.path / name

    def _shard(self, name: str) -> Any:
        if name in self._shards:
            return self._shards[name]
        import qdrant_edge as qe

        if not self.collection_exists(name):
            raise ValueError(f"no collection {name!r} in {self.location}; {self.describe_contents()}")
        try:
            shard = qe.EdgeShard.load(str(self._dir(name)))
        except Exception as err:
            if "WouldBlock" in str(err) or "lock" in str(err).lower():
                raise IndexLockedError(
                    f"collection {name!r} in {self.location} is locked: another process has it open "
                    "(Qdrant Edge serves one process per shard). Wait for that process to finish, or use a "
                    "Qdrant server (index.engine=client, index.url=...) for concurrent access") from err
            raise
        self._shards[name] = shard
        return shard

    # ------------------------------------------------------------------ collections
    def list_collections(self) -> list[str]:
        return sorted(p.name for p in self.path.iterdir() if (p / SHARD_CONFIG).exists())

    def collection_exists(self, name: str) -> bool:
        return (self._dir(name) / SHARD_CONFIG).exists()

    def create_collection(self, name: str, vectors: Mapping[str, VectorSpec], options: CollectionOptions,
                          metadata: Mapping[str, Any], sparse: Mapping[str, SparseSpec] | None = None) -> None:
        import qdrant_edge as qe

        folder = self._dir(name)
        if self.collection_exists(name) or name in self.aliases():
            raise ValueError(f"collection or alias {name!r} already exists in {self.location}")
        dims = max(spec.size for spec in vectors.values())
        threshold_kb = max(1, math.ceil(options.hnsw_threshold * dims * 4 / 1024))
        params = {vector_name: qe.EdgeVectorParams(size=spec.size, distance=edge_distance(spec.distance),
                                                   on_disk=options.on_disk or None)
                  for vector_name, spec in vectors.items()}
        config = qe.EdgeConfig(
            vectors=params[DEFAULT_VECTOR] if set(params) == {DEFAULT_VECTOR} else params,
            sparse_vectors={vector_name: qe.EdgeSparseVectorParams(modifier=edge_modifier(spec.modifier))
                            for vector_name, spec in (sparse or {}).items()} or None,
            hnsw_config=qe.HnswIndexConfig(m=options.hnsw_m, ef_construct=options.hnsw_ef_construct,
                                           full_scan_threshold=threshold_kb),
            quantization_config=edge_quantization(options.quantization),
            # Nothing is indexed while points stream in; finish() builds the graph once.
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=threshold_kb),
        )
        shard = qe.EdgeShard.create(str(folder), config)
        self._shards[name] = shard
        write_json_atomic(folder / METADATA_FILE, dict(metadata))
        for field_name, kind in options.payload_indexes.items():
            shard.update(qe.UpdateOperation.create_field_index(field_name, edge_schema(kind)))

    def collection_info(self, name: str, count: bool = True) -> CollectionInfo:
        folder = self._dir(name)
        if not self.collection_exists(name):
            raise ValueError(f"no collection {name!r} in {self.location}; {self.describe_contents()}")
        config = json.loads((folder / SHARD_CONFIG).read_text())
        vectors = {vector_name: VectorSpec(spec["size"], spec["distance"].lower())
                   for vector_name, spec in config.get("vectors", {}).items()}
        sparse = {vector_name: SparseSpec(str(spec.get("modifier") or "none").lower())
                  for vector_name, spec in (config.get("sparse_vectors") or {}).items()}
        metadata = self.metadata(name)
        points = self.count(name) if count or name in self._shards else int(metadata.get("points", 0))
        return CollectionInfo(name=name, vectors=vectors, points=points, metadata=metadata, sparse=sparse)

    def metadata(self, name: str) -> dict[str, Any]:
        file = self._dir(name) / METADATA_FILE
        return json.loads(file.read_text()) if file.exists() else {}

    def set_metadata(self, name: str, metadata: Mapping[str, Any]) -> None:
        write_json_atomic(self._dir(name) / METADATA_FILE, dict(metadata))

    def delete_collection(self, name: str) -> None:
        shard = self._shards.pop(name, None)
        if shard is None and self.collection_exists(name):
            shard = self._shard(name)  # fails with "locked" while another process uses it
            self._shards.pop(name)
        if shard is not None:
            shard.close()
        folder = self._dir(name)
        if folder.exists():
            # Rename first: a kill during the slow tree removal leaves no half collection under the name.
            trash = self.path / f".deleting-{name}-{os.getpid()}"
            os.replace(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)

    # ------------------------------------------------------------------ points
    def upsert(self, name: str, points: Sequence[Point]) -> None:
        import qdrant_edge as qe

        edge_points = [qe.Point(id=point.id, vector=edge_vector(point.vector), payload=point.payload)
                       for point in points]
        try:
            self._shard(name).update(qe.UpdateOperation.upsert_points(edge_points))
        except Exception as err:
            if "dimension" in str(err).lower():
                raise ValueError(f"collection {name!r}: {err}") from err
            raise

    def retrieve(self, name: str, ids: Sequence[str | int], with_vectors: bool = False) -> list[Record]:
        records = self._shard(name).retrieve(list(ids), with_payload=True, with_vector=with_vectors)
        return [Record(as_point_id(r.id), dict(r.payload or {}), r.vector if with_vectors else None) for r in records]

    def count(self, name: str, filter: Any = None) -> int:
        import qdrant_edge as qe

        return self._shard(name).count(qe.CountRequest(exact=True, filter=to_edge_filter(filter)))

    def search(self, name: str, vectors: np.ndarray, top_k: int, filter: Any = None,
               using: str = DEFAULT_VECTOR, options: SearchOptions = DEFAULT_SEARCH) -> list[list[ScoredRecord]]:
        import qdrant_edge as qe

        edge_filter = to_edge_filter(filter)
        quantization = qe.QuantizationSearchParams(rescore=options.rescore, oversampling=options.oversampling)
        params = qe.SearchParams(hnsw_ef=options.ef, exact=options.exact, quantization=quantization)
        requests = [qe.QueryRequest(limit=top_k, query=qe.Query.Nearest(vector.tolist(), using=using or None),
                                    filter=edge_filter, with_payload=True, params=params)
                    for vector in np.asarray(vectors, dtype=np.float32)]
        if not requests:
            return []
        responses = self._shard(name).query_batch(qe.QueryBatchRequest(requests))
        return [[ScoredRecord(as_point_id(p.id), float(p.score), dict(p.payload or {})) for p in response]
                for response in responses]

    def search_sparse(self, name: str, queries: Sequence[SparseValues], top_k: int, filter: Any = None,
                      using: str = SPARSE_VECTOR) -> list[list[ScoredRecord]]:
        import qdrant_edge as qe

        requests = [qe.QueryRequest(limit=top_k, query=qe.Query.Nearest(edge_sparse(query), using=using),
                                    filter=to_edge_filter(filter), with_payload=True) for query in queries]
        return self._query(name, requests)

    def fused_query(self, name: str, vectors: np.ndarray, queries: Sequence[SparseValues], top_k: int, prefetch: int,
                    fusion: Fusion, filter: Any, options: SearchOptions, using: str,
                    sparse_using: str) -> list[list[ScoredRecord]]:
        import qdrant_edge as qe

        edge_filter = to_edge_filter(filter)
        quantization = qe.QuantizationSearchParams(rescore=options.rescore, oversampling=options.oversampling)
        params = qe.SearchParams(hnsw_ef=options.ef, exact=options.exact, quantization=quantization)
        method = (qe.Fusion.Dbsf() if fusion.method == "dbsf"
                  else qe.Fusion.Rrf(k=fusion.rrf_k, weights=list(fusion.weights) if fusion.weights else None))
        requests = [qe.QueryRequest(limit=top_k, query=method, filter=edge_filter, with_payload=True, prefetches=[
            qe.Prefetch(limit=prefetch, query=qe.Query.Nearest(vector.tolist(), using=using or None),
                        filter=edge_filter, params=params),
            qe.Prefetch(limit=prefetch, query=qe.Query.Nearest(edge_sparse(query), using=sparse_using),
                        filter=edge_filter)])
            for vector, query in zip(np.asarray(vectors, dtype=np.float32), queries, strict=True)]
        return self._query(name, requests)

    def _query(self, name: str, requests: list[Any]) -> list[list[ScoredRecord]]:
        import qdrant_edge as qe

        if not requests:
            return []
        responses = self._shard(name).query_batch(qe.QueryBatchRequest(requests))
        return [[ScoredRecord(as_point_id(p.id), float(p.score), dict(p.payload or {})) for p in response]
                for response in responses]

    def scroll(self, name: str, limit: int = 256, offset: Any = None, filter: Any = None,
               with_vectors: bool = False) -> tuple[list[Record], Any]:
        import qdrant_edge as qe

        records, next_offset = self._shard(name).scroll(qe.ScrollRequest(
            offset=offset, limit=limit, filter=to_edge_filter(filter), with_payload=True, with_vector=with_vectors))
        return [Record(as_point_id(r.id), dict(r.payload or {}), r.vector if with_vectors else None)
                for r in records], next_offset

    def delete(self, name: str, ids: Sequence[str | int]) -> None:
        import qdrant_edge as qe

        self._shard(name).update(qe.UpdateOperation.delete_points(list(ids)))

    def finish(self, name: str, options: CollectionOptions, show_progress_bar: bool = True) -> bool:
        """Flush, then build the HNSW graph once if the collection reached ``options.hnsw_threshold``."""
        shard = self._shard(name)
        shard.flush()
        points = self.count(name)
        if points < max(1, options.hnsw_threshold):
            return False
        with tqdm(desc=f"Building HNSW for {points} points", unit="s", total=None,
                  disable=not show_progress_bar) as progress, ticking(progress):
            shard.optimize()
        shard.flush()
        return True

    # ------------------------------------------------------------------ aliases
    def aliases(self) -> dict[str, str]:
        file = self.path / ALIASES_FILE
        return dict(json.loads(file.read_text())) if file.exists() else {}

    @contextlib.contextmanager
    def _aliases_locked(self) -> Iterator[dict[str, str]]:
        with open(self.path / ".aliases.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                aliases = self.aliases()
                before = dict(aliases)
                yield aliases
                if aliases != before:
                    write_json_atomic(self.path / ALIASES_FILE, aliases)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def set_alias(self, alias: str, collection: str) -> None:
        self._dir(alias)
        if not self.collection_exists(collection):
            raise ValueError(f"cannot point alias {alias!r} at {collection!r}: no such collection in {self.location}")
        if self.collection_exists(alias):
            raise ValueError(f"{alias!r} is a collection in {self.location}, so it cannot also be an alias")
        with self._aliases_locked() as aliases:
            aliases[alias] = collection

    def delete_alias(self, alias: str) -> None:
        with self._aliases_locked() as aliases:
            aliases.pop(alias, None)

    # ------------------------------------------------------------------ lifetime
    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the index's writer lock: a second writing process fails at once with a clear error."""
        lock = open(self.path / ".writer.lock", "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            lock.close()
            raise IndexLockedError(f"the index {self.location} is locked: another process is writing to it. Wait "
                                   "for it to finish (nothing is corrupted), or index into another index.path") from err
        try:
            self.remove_stale_folders()
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()

    def remove_stale_folders(self) -> list[str]:
        """Remove what killed runs left and no listing shows: a version folder without its shard config or
        its textdml metadata (a run died, e.g. of SIGBUS on a full disk, while creating it: nothing can
        resume it) and the trash of an interrupted delete. Run under the writer lock only, where no other
        process can be creating a version; versions marked ``building`` stay, a run of their model resumes them."""
        from textdml.index.versions import VERSION_PATTERN

        removed, live = [], set(self.aliases().values())
        for folder in sorted(self.path.iterdir()):
            if not folder.is_dir() or folder.name in live:
                continue
            half_built = bool(VERSION_PATTERN.match(folder.name)) and not (
                (folder / SHARD_CONFIG).exists() and (folder / METADATA_FILE).exists())
            if half_built or folder.name.startswith(".deleting-"):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
        if removed:
            logger.warning("removed %d unfinished folder(s) that killed runs left in %s: %s", len(removed),
                           self.location, ", ".join(removed))
        return removed

    def close(self) -> None:
        for shard in self._shards.values():
            with contextlib.suppress(Exception):
                shard.flush()
            shard.close()
        self._shards.clear()


@contextlib.contextmanager
def ticking(progress: tqdm, every: float = 0.5) -> Iterator[None]:
    """Advance a bar by elapsed seconds while a blocking call (the HNSW build) runs."""
    done = threading.Event()

    def tick() -> None:
        last = time.monotonic()
        while not done.wait(every):
            now = time.monotonic()
            progress.update(round(now - last, 1))
            last = now

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def edge_vector(vector: Any) -> Any:
    if isinstance(vector, Mapping):
        return {name: edge_sparse(v) if isinstance(v, SparseValues) else np.asarray(v, dtype=np.float32).tolist()
                for name, v in vector.items()}
    return np.asarray(vector, dtype=np.float32).tolist()


def edge_sparse(vector: SparseValues) -> Any:
    import qdrant_edge as qe

    return qe.SparseVector(indices=[int(i) for i in vector.indices], values=[float(v) for v in vector.values])


def edge_modifier(modifier: str) -> Any:
    import qdrant_edge as qe

    return qe.Modifier.Idf if modifier == "idf" else None


def edge_quantization(kind: str) -> Any:
    import qdrant_edge as qe

    if kind == "none":
        return None
    if kind == "scalar":
        return qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99, always_ram=True)
    if kind == "binary":
        return qe.BinaryQuantizationConfig(always_ram=True)
    if kind == "product":
        return qe.ProductQuantizationConfig(qe.CompressionRatio.X16, always_ram=True)
    raise ValueError(f"unknown quantization {kind!r}")


def edge_schema(kind: str) -> Any:
    import qdrant_edge as qe

    return {"keyword": qe.PayloadSchemaType.Keyword, "integer": qe.PayloadSchemaType.Integer,
            "float": qe.PayloadSchemaType.Float, "bool": qe.PayloadSchemaType.Bool,
            "text": qe.PayloadSchemaType.Text, "datetime": qe.PayloadSchemaType.Datetime,
            "uuid": qe.PayloadSchemaType.Uuid}[kind]
