"""qdrant-client behind the engine interface: a Qdrant server by URL, or qdrant-client's local mode.

The local mode (``path=``) is qdrant-client's pure-Python stand-in for the server API: right for
tests and small collections, slow past a few thousand points (use the Edge engine there). A server
gets native aliases (swapped atomically by one ``update_collection_aliases`` call), collection
metadata and ``upload_points`` with retries.

The API key comes from ``api_key=`` or the ``QDRANT_API_KEY`` environment variable; it is handed
to qdrant-client and never stored by textdml (not in metadata, payloads, messages or ``repr``).
"""

from __future__ import annotations

import ipaddress
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from qdrant_client import QdrantClient, models

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
from textdml.redaction import redact_url

API_KEY_ENV = "QDRANT_API_KEY"
DISTANCES = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT}


def is_local_host(host: str | None) -> bool:
    if not host or host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_key_in_clear(url: str, api_key: str | None) -> None:
    """An API key over plain http to another machine can be read by anyone on the way."""
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if api_key and parsed.scheme == "http" and not is_local_host(parsed.hostname):
        warnings.warn(f"sending the Qdrant API key over plain http to {parsed.hostname}: anyone on the network "
                      "can read it; use an https:// URL", UserWarning, stacklevel=3)


def client_quantization(kind: str) -> Any:
    if kind == "none":
        return None
    if kind == "scalar":
        return models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
            type=models.ScalarType.INT8, quantile=0.99, always_ram=True))
    if kind == "binary":
        return models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
    if kind == "product":
        return models.ProductQuantization(product=models.ProductQuantizationConfig(
            compression=models.CompressionRatio.X16, always_ram=True))
    raise ValueError(f"unknown quantization {kind!r}")


class ClientEngine(VectorEngine):
    """A Qdrant server (``url=``) or qdrant-client's local mode (``path=``, a folder or ``":memory:"``).

    Args:
        url: the server, e.g. ``http://localhost:6333``; checked at once, so an unreachable server is
            an error naming the URL after ``timeout`` seconds instead of a hang later.
        path: a local-mode folder, or ``":memory:"``.
        api_key: the server's key; default ``$QDRANT_API_KEY``.
        timeout: seconds for each server request.
        create: make a missing local-mode folder (indexing); ``False`` makes it an error.
        upload_parallel: processes ``upload_points`` uses on a server.
    """

    kind = "client"

    def __init__(self, url: str | None = None, path: str | os.PathLike | None = None, api_key: str | None = None,
                 timeout: float = 5.0, create: bool = True, upload_parallel: int = 1):
        if (url is None) == (path is None):
            raise ValueError("give exactly one of path= (embedded: a folder, or ':memory:') or url= (a Qdrant "
                             f"server); got path={path!r}, url={url!r}")
        self.url = url
        self.upload_parallel = upload_parallel
        self._folder: Path | None = None
        if url is not None:
            api_key = api_key or os.environ.get(API_KEY_ENV) or None
            warn_if_key_in_clear(url, api_key)
            # No version handshake: it is one more request that could wait out the timeout.
            self.client = QdrantClient(url=url, api_key=api_key, timeout=max(1, round(timeout)), check_compatibility=False)
            self._location = redact_url(url)  # printed in listings and messages: never the URL's password
            try:
                self.client.get_collections()
            except Exception as err:
                self.client.close()
                raise ValueError(f"the Qdrant server at {self._location} is not reachable ({type(err).__name__}: {err}); "
                                 "check index.url and that the server is running") from err
            return
        if api_key is not None:
            raise ValueError("api_key authenticates to a server given by url=; the embedded mode (path=) has no key")
        self._location = str(path)
        if str(path) == ":memory:":
            self.client = QdrantClient(location=":memory:")
            return
        folder = Path(path)
        self._folder = folder
        from textdml.index.edge import MARKER_FILE, describe_folder

        if (folder / MARKER_FILE).exists():
            raise ValueError(f"{str(folder)!r} is a Qdrant Edge index: open it with index.engine=edge")
        if not folder.exists() and not create:
            raise ValueError(f"index.path {str(folder)!r} does not exist (nothing was indexed there); "
                             f"{describe_folder(folder)}. Fix index.path, or run `textdml index` first")
        try:
            self.client = QdrantClient(path=str(folder))
        except RuntimeError as err:
            if "already accessed" in str(err):
                raise IndexLockedError(f"the local Qdrant store {str(folder)!r} is locked: another process has it "
                                       "open. Wait for it to finish, or use a Qdrant server") from err
            raise

    @classmethod
    def wrap(cls, client: QdrantClient, location: str = "qdrant-client") -> ClientEngine:
        """An engine around a ``QdrantClient`` made elsewhere (the API before engines took one)."""
        engine = cls.__new__(cls)
        engine.client, engine.url, engine.upload_parallel, engine._location = client, None, 1, location
        engine._folder = None
        return engine

    def __repr__(self) -> str:  # never shows the key
        return f"ClientEngine({self._location!r})"

    @property
    def location(self) -> str:
        return self._location

    @property
    def local_folder(self) -> Path | None:
        return self._folder

    # ------------------------------------------------------------------ collections
    def list_collections(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    def collection_exists(self, name: str) -> bool:
        return self.client.collection_exists(name) and name not in self.aliases()

    def create_collection(self, name: str, vectors: Mapping[str, VectorSpec], options: CollectionOptions,
                          metadata: Mapping[str, Any], sparse: Mapping[str, SparseSpec] | None = None) -> None:
        if self.client.collection_exists(name):
            raise ValueError(f"collection or alias {name!r} already exists in {self.location}")
        params = {vector_name: models.VectorParams(size=spec.size, distance=DISTANCES[spec.distance],
                                                   on_disk=options.on_disk or None)
                  for vector_name, spec in vectors.items()}
        self.client.create_collection(
            name,
            vectors_config=params[DEFAULT_VECTOR] if set(params) == {DEFAULT_VECTOR} else params,
            sparse_vectors_config={vector_name: models.SparseVectorParams(modifier=client_modifier(spec.modifier))
                                   for vector_name, spec in (sparse or {}).items()} or None,
            hnsw_config=models.HnswConfigDiff(m=options.hnsw_m, ef_construct=options.hnsw_ef_construct),
            quantization_config=client_quantization(options.quantization),
            metadata=dict(metadata),
        )
        for field_name, kind in options.payload_indexes.items():
            self.client.create_payload_index(name, field_name, field_schema=models.PayloadSchemaType(kind))

    def collection_info(self, name: str, count: bool = True) -> CollectionInfo:
        if not self.collection_exists(name):
            raise ValueError(f"no collection {name!r} in {self.location}; {self.describe_contents()}")
        config = self.client.get_collection(name).config
        vectors = config.params.vectors
        if isinstance(vectors, models.VectorParams):
            specs = {DEFAULT_VECTOR: VectorSpec(vectors.size, vectors.distance.value.lower())}
        else:
            specs = {n: VectorSpec(v.size, v.distance.value.lower()) for n, v in (vectors or {}).items()}
        sparse = {n: SparseSpec("idf" if v.modifier == models.Modifier.IDF else "none")
                  for n, v in (config.params.sparse_vectors or {}).items()}
        return CollectionInfo(name=name, vectors=specs, points=self.count(name), metadata=dict(config.metadata or {}),
                              sparse=sparse)

    def set_metadata(self, name: str, metadata: Mapping[str, Any]) -> None:
        self.client.update_collection(name, metadata=dict(metadata))

    def delete_collection(self, name: str) -> None:
        self.client.delete_collection(name)

    # ------------------------------------------------------------------ points
    def upsert(self, name: str, points: Sequence[Point]) -> None:
        structs = [models.PointStruct(id=p.id, vector=client_vector(p.vector), payload=p.payload) for p in points]
        if self.url is None:  # local mode: upload_points would only loop over upsert
            self.client.upsert(name, points=structs, wait=True)
            return
        self.client.upload_points(name, points=structs, batch_size=256, parallel=self.upload_parallel,
                                  max_retries=3, wait=True)

    def retrieve(self, name: str, ids: Sequence[str | int], with_vectors: bool = False) -> list[Record]:
        records = self.client.retrieve(name, ids=list(ids), with_payload=True, with_vectors=with_vectors)
        return [Record(str(r.id), dict(r.payload or {}), r.vector if with_vectors else None) for r in records]

    def count(self, name: str, filter: Any = None) -> int:
        return self.client.count(name, count_filter=filter, exact=True).count

    def _params(self, options: SearchOptions) -> models.SearchParams | None:
        if self.url is None:
            return None  # the local mode always searches exactly and warns about any params
        return models.SearchParams(hnsw_ef=options.ef, exact=options.exact, quantization=models.QuantizationSearchParams(
            rescore=options.rescore, oversampling=options.oversampling))

    def search(self, name: str, vectors: np.ndarray, top_k: int, filter: Any = None,
               using: str = DEFAULT_VECTOR, options: SearchOptions = DEFAULT_SEARCH) -> list[list[ScoredRecord]]:
        params = self._params(options)
        requests = [models.QueryRequest(query=vector.tolist(), using=using or None, limit=top_k, filter=filter,
                                        with_payload=True, params=params)
                    for vector in np.asarray(vectors, dtype=np.float32)]
        if not requests:
            return []
        responses = self.client.query_batch_points(name, requests=requests)
        return [[ScoredRecord(str(p.id), float(p.score), dict(p.payload or {})) for p in response.points]
                for response in responses]

    def search_sparse(self, name: str, queries: Sequence[SparseValues], top_k: int, filter: Any = None,
                      using: str = SPARSE_VECTOR) -> list[list[ScoredRecord]]:
        requests = [models.QueryRequest(query=client_sparse(query), using=using, limit=top_k, filter=filter,
                                        with_payload=True) for query in queries]
        return self._query(name, requests)

    def fused_query(self, name: str, vectors: np.ndarray, queries: Sequence[SparseValues], top_k: int, prefetch: int,
                    fusion: Fusion, filter: Any, options: SearchOptions, using: str,
                    sparse_using: str) -> list[list[ScoredRecord]]:
        method: Any = (models.FusionQuery(fusion=models.Fusion.DBSF) if fusion.method == "dbsf" else
                       models.RrfQuery(rrf=models.Rrf(k=fusion.rrf_k,
                                                      weights=list(fusion.weights) if fusion.weights else None)))
        params = self._params(options)
        requests = [models.QueryRequest(query=method, limit=top_k, filter=filter, with_payload=True, prefetch=[
            models.Prefetch(query=vector.tolist(), using=using or None, limit=prefetch, filter=filter, params=params),
            models.Prefetch(query=client_sparse(query), using=sparse_using, limit=prefetch, filter=filter)])
            for vector, query in zip(np.asarray(vectors, dtype=np.float32), queries, strict=True)]
        return self._query(name, requests)

    def _query(self, name: str, requests: list[models.QueryRequest]) -> list[list[ScoredRecord]]:
        if not requests:
            return []
        responses = self.client.query_batch_points(name, requests=requests)
        return [[ScoredRecord(str(p.id), float(p.score), dict(p.payload or {})) for p in response.points]
                for response in responses]

    def scroll(self, name: str, limit: int = 256, offset: Any = None, filter: Any = None,
               with_vectors: bool = False) -> tuple[list[Record], Any]:
        records, next_offset = self.client.scroll(name, scroll_filter=filter, limit=limit, offset=offset,
                                                  with_payload=True, with_vectors=with_vectors)
        return [Record(str(r.id), dict(r.payload or {}), r.vector if with_vectors else None) for r in records], next_offset

    def delete(self, name: str, ids: Sequence[str | int]) -> None:
        self.client.delete(name, points_selector=models.PointIdsList(points=list(ids)), wait=True)

    # ------------------------------------------------------------------ aliases
    def aliases(self) -> dict[str, str]:
        return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}

    def set_alias(self, alias: str, collection: str) -> None:
        if not self.collection_exists(collection):
            raise ValueError(f"cannot point alias {alias!r} at {collection!r}: no such collection in {self.location}")
        if self.collection_exists(alias):
            raise ValueError(f"{alias!r} is a collection in {self.location}, so it cannot also be an alias")
        operations: list[Any] = []
        if alias in self.aliases():
            operations.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        operations.append(models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)))
        self.client.update_collection_aliases(change_aliases_operations=operations)  # one atomic request

    def delete_alias(self, alias: str) -> None:
        if alias in self.aliases():
            self.client.update_collection_aliases(change_aliases_operations=[
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))])

    def close(self) -> None:
        self.client.close()


def client_vector(vector: Any) -> Any:
    if isinstance(vector, Mapping):
        return {name: client_sparse(v) if isinstance(v, SparseValues) else np.asarray(v, dtype=np.float32).tolist()
                for name, v in vector.items()}
    return np.asarray(vector, dtype=np.float32).tolist()


def client_sparse(vector: SparseValues) -> models.SparseVector:
    return models.SparseVector(indices=[int(i) for i in vector.indices], values=[float(v) for v in vector.values])


def client_modifier(modifier: str) -> models.Modifier | None:
    return models.Modifier.IDF if modifier == "idf" else None
