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
from textdml.index.qdrant import (
    collection_options,
    fusion_settings,
    open_client,
    open_index,
    search_options,
    sparse_source,
)
from textdml.index.searching import evaluate_through_collection
from textdml.redaction import redact_url

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


@dataclass(frozen=True)
class CorpusInCollection:
    """Which documents of the eval corpus a collection holds, by point id (see :func:`find_eval_corpus`).

    Attributes:
        point_ids: points holding a document of the eval corpus with the same text.
        missing: documents of the eval corpus the collection lacks.
        changed: documents whose id the collection holds with another text.
        points: every point of the collection.
    """

    point_ids: list[str]
    missing: int
    changed: int
    points: int

    @property
    def whole_collection(self) -> bool:
        """Whether the collection holds the eval corpus and nothing else (no filter needed)."""
        return len(self.point_ids) == self.points

    def describe(self, corpus_size: int) -> str:
        """One plain line: what was searched, and how it differs from the exact evaluation."""
        found = len(self.point_ids)
        line = (f"searched the {found} documents of the eval corpus (the whole collection)" if self.whole_collection
                else f"searched only the {found} documents of the eval corpus among the collection's {self.points} "
                     "points (a filter on their ids), as the exact evaluation does")
        if found < corpus_size:
            line += (f"; the collection lacks {self.missing} and holds {self.changed} with another text of the "
                     f"{corpus_size} documents of the eval corpus, so these metrics are over a different corpus "
                     "than the exact ones: index the eval corpus with `textdml index` (without --data)")
        return line


def find_eval_corpus(engine: VectorEngine, collection: str, corpus_ids: Sequence[str], corpus: Sequence[str],
                     text_field: str, chunk_size: int = 1024) -> CorpusInCollection:
    """Look up each document of the eval corpus in ``collection`` by its point id and compare its text."""
    from textdml.index.documents import point_id

    name = engine.resolve(collection)
    found: list[str] = []
    missing = changed = 0
    for start in range(0, len(corpus_ids), chunk_size):
        ids = [point_id(doc_id) for doc_id in corpus_ids[start : start + chunk_size]]
        stored = {record.id: record.payload for record in engine.retrieve(name, ids)}
        for pid, text in zip(ids, corpus[start : start + chunk_size], strict=True):
            if pid not in stored:
                missing += 1
            elif text_field in stored[pid] and stored[pid][text_field] != text:
                changed += 1  # the same id for another document, e.g. a collection indexed from --data
            else:
                found.append(pid)
    return CorpusInCollection(found, missing, changed, engine.count(name))


def evaluate_live_index(model: Any, evaluator: Any, config: IndexConfig, force: bool = False) -> dict[str, float]:
    """Metrics through ``config.collection`` (prefixed ``index/``) and ``index/index_recall@k``.

    ``evaluator`` is the retrieval evaluator of the recipe (its queries, corpus and relevant
    documents). The search is restricted to the documents of its corpus (a filter on their point
    ids when the collection holds more, e.g. the whole eval file against ``eval.data.max_rows``), so
    the figures compare with the exact metrics of ``evaluator(model)``; where the collection lacks
    some of them, the printout says that the corpora differ. ``index_recall@k`` is measured against
    exact search over the same documents.
    """
    from qdrant_client import models

    require_retrieval(evaluator, "--through-index")
    queries = dict(zip(evaluator.query_ids, evaluator.queries))
    with open_index(config, create=False) as engine:
        held = find_eval_corpus(engine, config.collection, list(evaluator.corpus_ids), list(evaluator.corpus),
                                config.text_field)
        if not held.point_ids:
            raise ValueError(f"collection {config.collection!r} ({held.points} points) holds none of the "
                             f"{len(evaluator.corpus_ids)} documents of the eval corpus (by id and text): index them "
                             "with `textdml index` without --data, or name the collection that holds them "
                             "(index.collection)")
        corpus_filter = None if held.whole_collection else models.Filter(
            must=[models.HasIdCondition(has_id=held.point_ids)])
        metrics = evaluate_through_collection(
            model, engine, config.collection, queries, evaluator.relevant_docs, evaluator.k_values,
            id_field=config.id_field, force=force or config.force, options=search_options(config),
            with_index_recall=True, filter=corpus_filter, fusion=fusion_settings(config), sparse=sparse_source(config))
    print(f"\nthrough the index {config.collection!r} ({engine.location}):")
    print(f"  {held.describe(len(evaluator.corpus_ids))}")
    print(format_modes(metrics) if "hybrid_ndcg@10" in metrics or "sparse_ndcg@10" in metrics
          else "\n".join(f"  {name:<22}{value:.4f}" for name, value in metrics.items()))
    return {f"index/{name}": value for name, value in metrics.items()}


def format_modes(metrics: dict[str, float]) -> str:
    """The metrics of a hybrid collection, one row per metric, one column per search mode.

    Example:
        >>> print(format_modes({"dense_ndcg@10": 0.5, "sparse_ndcg@10": 0.25, "hybrid_ndcg@10": 0.75}))
          metric      dense_  sparse_  hybrid_
          ndcg@10     0.5000   0.2500   0.7500
    """
    modes = [mode for mode in ("dense", "sparse", "hybrid") if any(key.startswith(f"{mode}_") for key in metrics)]
    names = list(dict.fromkeys(key.split("_", 1)[1] for key in metrics if key.split("_", 1)[0] in modes))
    width = max(12, *(len(name) + 2 for name in names))
    lines = ["  " + "metric".ljust(width) + "".join(f"{mode + '_':>9}" for mode in modes)]
    for name in names:
        cells = [f"{metrics[f'{mode}_{name}']:.4f}" if f"{mode}_{name}" in metrics else "-" for mode in modes]
        lines.append("  " + name.ljust(width) + "".join(f"{cell:>9}" for cell in cells))
    return "\n".join(lines)


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
    engine = (f"server {redact_url(config.url)}" if config.url else
              "Qdrant Edge, a temporary folder" if config.engine == "edge" else "qdrant-client local mode")
    print(f"\nstorage vs quality ({engine}; search_ef={config.search_ef}, rescore={config.rescore}, "
          f"oversampling={config.oversampling}; 'vs exact' = recall of exact full-size search):")
    print(format_storage_table(rows))
    return rows

