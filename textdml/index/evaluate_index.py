"""``textdml eval --through-index``: the retrieval metrics of the live collection as it serves
queries, beside recall@k of the index against exact search (what HNSW and quantization cost);
``textdml eval --dims ... --quantizations ...``: one table of storage vs quality, each row measured
through a real, temporary collection of the eval corpus."""

from __future__ import annotations

import contextlib
import math
import tempfile
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from textdml.index.documents import check_dim
from textdml.index.engine import Quantization, VectorEngine
from textdml.index.indexing import index_documents
from textdml.index.qdrant import collection_options, open_client, open_index, search_options
from textdml.index.searching import evaluate_through_collection

if TYPE_CHECKING:
    import torch

    from textdml.config import IndexConfig

# Bits per coordinate of the vectors searched first: float32 originals; int8 (scalar); one bit
# (binary); Qdrant's product quantization at 16x compression codes 4 coordinates in one byte.
QUANTIZED_BITS: dict[str, int] = {"none": 32, "scalar": 8, "binary": 1, "product": 2}


def require_retrieval(evaluator: Any, flag: str) -> None:
    if not hasattr(evaluator, "relevant_docs"):
        raise ValueError(f"{flag} needs a retrieval evaluation (pairs: queries and their documents); "
                         f"this recipe's eval data gives a {type(evaluator).__name__}")


def evaluate_live_index(model: Any, evaluator: Any, config: IndexConfig, force: bool = False) -> dict[str, float]:
    """Metrics through ``config.collection`` (prefixed ``index/``) and ``index/index_recall@k``.

    ``evaluator`` is the retrieval evaluator of the recipe (its queries and relevant documents);
    the collection must hold its corpus, e.g. indexed by ``textdml index`` without ``--data``.
    """
    require_retrieval(evaluator, "--through-index")
    queries = dict(zip(evaluator.query_ids, evaluator.queries))
    with open_index(config, create=False) as engine:
        metrics = evaluate_through_collection(
            model, engine, config.collection, queries, evaluator.relevant_docs, evaluator.k_values,
            id_field=config.id_field, force=force or config.force, options=search_options(config),
            with_index_recall=True)
    print(f"\nthrough the index {config.collection!r} ({engine.location}):")
    for name, value in metrics.items():
        print(f"  {name:<22}{value:.4f}")
    return {f"index/{name}": value for name, value in metrics.items()}


def vector_bytes(dim: int, quantization: Quantization) -> int:
    """Bytes per vector that a search scans first: the float32 vector, or its quantized code.

    With quantization the float32 originals are kept too (in RAM, or on disk with
    ``index.on_disk``) to rescore the best candidates.

    Example:
        >>> [vector_bytes(384, q) for q in ("none", "scalar", "product", "binary")]
        [1536, 384, 96, 48]
    """
    return math.ceil(dim * QUANTIZED_BITS[quantization] / 8)


@dataclass(frozen=True)
class StorageRow:
    """One (size, quantization) of the storage-vs-quality table.

    Attributes:
        dim: coordinates kept per vector (the model's full size, or an ``index.dim`` cut).
        quantization: how the searched vectors are compressed.
        bytes_per_vector: what a search scans per point (:func:`vector_bytes`).
        metrics: the retrieval metrics through the collection (names of
            ``InformationRetrievalEvaluator``), plus ``index_recall@k``: the share of the exact
            full-size top-k that this collection returns.
    """

    dim: int
    quantization: Quantization
    bytes_per_vector: int
    metrics: dict[str, float]


class CachedEncoder:
    """Wraps an encoder so that each (prompt, text) is embedded once: every collection of the
    table and the exact reference search reuse the same vectors (encoding is the slow part)."""

    def __init__(self, model: Any):
        self.model = model
        self.embedding_dim = int(model.embedding_dim)
        self.similarity = model.similarity
        self.normalize = getattr(model, "normalize", None)
        self.prompts = dict(getattr(model, "prompts", None) or {})
        self.texts_encoded = 0
        self._vectors: dict[tuple[str, str], np.ndarray] = {}

    def identity(self) -> dict[str, str]:
        return self.model.identity()

    def encode(self, texts: list[str], batch_size: int = 32, show_progress_bar: bool | None = None,
               convert_to: Literal["numpy", "torch"] = "numpy", prompt: str | None = None,
               **_: Any) -> np.ndarray | torch.Tensor:
        key = prompt or ""
        missing = list(dict.fromkeys(text for text in texts if (key, text) not in self._vectors))
        if missing:
            vectors = self.model.encode(missing, batch_size=batch_size, show_progress_bar=show_progress_bar,
                                        convert_to="numpy", **({"prompt": prompt} if prompt else {}))
            if hasattr(vectors, "detach"):  # an encoder that ignores convert_to
                vectors = vectors.detach().float().cpu().numpy()
            self._vectors.update(zip(((key, text) for text in missing), np.asarray(vectors, dtype=np.float32)))
            self.texts_encoded += len(missing)
        embeddings = np.stack([self._vectors[(key, text)] for text in texts])  # (N, D)
        if convert_to == "torch":
            import torch

            return torch.from_numpy(embeddings)
        return embeddings


@contextlib.contextmanager
def scratch_index(config: IndexConfig) -> Iterator[tuple[VectorEngine, str]]:
    """An engine and a name prefix for throw-away collections, removed afterwards: a temporary
    folder on the configured embedded engine, or uniquely named collections on the server."""
    if config.url:
        engine = open_index(config)
        prefix = f"textdml-storage-{uuid.uuid4().hex[:8]}-"
        try:
            yield engine, prefix
        finally:
            for name in engine.list_collections():
                if name.startswith(prefix):
                    engine.delete_collection(name)
            engine.close()
        return
    if config.engine == "client":
        warnings.warn("index.engine=client with a path is qdrant-client's local mode: it searches exactly and ignores "
                      "HNSW and quantization, so every quantization row measures the float vectors; use "
                      "index.engine=edge or a server (index.url)", UserWarning, stacklevel=4)
    with tempfile.TemporaryDirectory(prefix="textdml-storage-") as folder:
        engine = open_client(path=Path(folder) / "index", engine=config.engine)
        try:
            yield engine, ""
        finally:
            engine.close()


def compare_storage(model: Any, evaluator: Any, config: IndexConfig, dims: Sequence[int] | None = None,
                    quantizations: Sequence[Quantization] = ("none",)) -> list[StorageRow]:
    """Storage vs quality: the eval corpus indexed at each size and quantization, searched as served.

    For each ``(dim, quantization)`` the corpus of ``evaluator`` is indexed into a temporary
    collection on the configured engine (a temporary folder for Qdrant Edge, throw-away
    collections on a server; all removed afterwards), with ``index.dim=dim`` and the index
    settings of ``config`` except that the HNSW graph and the quantized vectors are always built
    (``hnsw_threshold=0``): quantization only applies to an indexed collection. The queries then
    search it with the configured ``search_ef``, ``rescore`` and ``oversampling``. The corpus and
    queries are encoded once for the whole table.

    Args:
        model: the encoder.
        evaluator: an :class:`~textdml.evaluation.retrieval.InformationRetrievalEvaluator` (its
            queries, corpus, relevant documents and metric cut-offs).
        config: the ``index`` section: engine, location and collection settings.
        dims: sizes to keep, each 1..the model's size (default: the full size only). The full
            size is stored as the model writes it, so that row with ``"none"`` gives the metrics
            of ``evaluator(model)``.
        quantizations: ``none``, ``scalar``, ``binary``, ``product``.

    Returns:
        One :class:`StorageRow` per combination, in the order given (dims, then quantizations).
    """
    require_retrieval(evaluator, "the storage table (--dims / --quantizations)")
    full = int(model.embedding_dim)
    dims = list(dims) if dims else [full]
    for dim in dims:
        check_dim(dim, full, "--dims (dims=)")
    if not quantizations:
        raise ValueError("--quantizations (quantizations=) is empty: name at least one of none, scalar, binary, "
                         "product")
    base = replace(collection_options(config), hnsw_threshold=0, payload_indexes={})
    options = {quantization: replace(base, quantization=quantization) for quantization in quantizations}
    cached = CachedEncoder(model)
    exact = evaluator.search(cached)  # full size, in memory: the reference of index_recall@k
    queries = dict(zip(evaluator.query_ids, evaluator.queries))
    documents = [{"id": doc_id, "text": text} for doc_id, text in zip(evaluator.corpus_ids, evaluator.corpus,
                                                                        strict=True)]
    rows = []
    with scratch_index(config) as (engine, prefix):
        for dim in dims:
            for quantization in quantizations:
                name = f"{prefix}d{dim}-{quantization}"
                index_documents(cached, documents, engine, name, batch_size=config.batch_size,
                                show_progress_bar=False, versioned=False, options=options[quantization],
                                encode_batch_size=config.encode_batch_size, dim=None if dim == full else dim)
                metrics = evaluate_through_collection(
                    cached, engine, name, queries, evaluator.relevant_docs, evaluator.k_values,
                    mrr_at_k=evaluator.mrr_at_k, ndcg_at_k=evaluator.ndcg_at_k, map_at_k=evaluator.map_at_k,
                    options=search_options(config), exact_hits=exact)
                engine.delete_collection(name)  # one collection on disk at a time
                rows.append(StorageRow(dim, quantization, vector_bytes(dim, quantization), metrics))
    return rows


def format_storage_table(rows: Sequence[StorageRow], k: int = 10) -> str:
    """The table ``textdml eval --dims`` prints: size, quantization, bytes per vector, nDCG, recall
    and MRR at ``k``, and ``index_recall@k`` against exact full-size search (``vs exact``).

    Example:
        >>> row = StorageRow(128, "scalar", 128, {"ndcg@10": 0.5, "recall@10": 0.75, "mrr@10": 0.25,
        ...                                       "index_recall@10": 0.875})
        >>> print(format_storage_table([row]))
        dim  quantization  bytes/vector  ndcg@10  recall@10  mrr@10  vs exact@10
        128  scalar                 128   0.5000     0.7500  0.2500       0.8750
    """
    columns = [f"ndcg@{k}", f"recall@{k}", f"mrr@{k}", f"index_recall@{k}"]
    header = ["dim", "quantization", "bytes/vector", *columns[:3], f"vs exact@{k}"]
    table = [header] + [[str(row.dim), row.quantization, str(row.bytes_per_vector),
                         *(f"{row.metrics.get(column, float('nan')):.4f}" for column in columns)] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) if i < 2 else cell.rjust(width)
                               for i, (cell, width) in enumerate(zip(line, widths, strict=True))).rstrip()
                     for line in table)


def print_storage_table(model: Any, evaluator: Any, config: IndexConfig, dims: Sequence[int] | None,
                        quantizations: Sequence[Quantization]) -> list[StorageRow]:
    """Build and print the table (``textdml eval --dims ... --quantizations ...``)."""
    rows = compare_storage(model, evaluator, config, dims, quantizations)
    engine = (f"server {config.url}" if config.url else
              "Qdrant Edge, a temporary folder" if config.engine == "edge" else "qdrant-client local mode")
    print(f"\nstorage vs quality ({engine}; search_ef={config.search_ef}, rescore={config.rescore}, "
          f"oversampling={config.oversampling}; 'vs exact' = recall of exact full-size search):")
    print(format_storage_table(rows))
    return rows

