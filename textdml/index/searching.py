"""Search through a collection (or its alias), with filters, and retrieval metrics as served.

Before a query is encoded the collection is checked: it must exist (else the error lists what
does), hold vectors of the model's size, have been indexed by the same model (else an error names
both, unless ``force``), and know the fields a filter reads (else the filter would silently match
nothing). A collection indexed with ``index.dim`` records it: queries are cut to the same size
and re-normalised, so the user never gives the size twice.

A hybrid collection (indexed with ``index.sparse``) is searched ``dense``, ``sparse`` or ``hybrid``
(the default there: both legs fused by ``index.fusion``); its queries' sparse vectors come from the
source the collection records, or from the one given, which must match it.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from textdml.index.documents import MODEL_HASH_KEY, encode_vectors
from textdml.index.engine import (
    DEFAULT_VECTOR,
    SPARSE_VECTOR,
    Fusion,
    ScoredRecord,
    SearchOptions,
    SparseValues,
    VectorEngine,
)
from textdml.index.filters import check_filter_fields
from textdml.index.indexing import as_engine, check_same_model
from textdml.models.identity import ModelIdentity, model_identity

if TYPE_CHECKING:
    from textdml.index.sparse import SparseSource
    from textdml.models.protocols import SupportsEncode

SearchMode = Literal["dense", "sparse", "hybrid"]
SEARCH_MODES: tuple[str, ...] = ("dense", "sparse", "hybrid")


@dataclass(frozen=True)
class SearchHit:
    """One retrieved document: its id, its similarity to the query and its stored payload."""

    doc_id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class Target:
    """A checked search target: the collection behind the name, its payload schema, and the size
    its vectors were cut to (``index.dim``; None: full size), which queries are cut to as well."""

    name: str
    collection: str
    id_field: str
    fields: tuple[str, ...] | None
    dim: int | None = None
    # The sparse source the collection records (a hybrid collection), None for dense vectors only.
    sparse: dict[str, Any] | None = None


def open_target(engine: VectorEngine, name: str, model: SupportsEncode, force: bool = False, filter: Any = None,
                using: str = DEFAULT_VECTOR, id_field: str | None = None, verb: str = "search",
                expected_dim: int | None = None) -> Target:
    """Resolve ``name`` and check that ``model`` may search it (see the module docstring); ``verb``
    names the command in the error about another model. ``expected_dim`` (``index.dim`` of the
    caller's config): the size the caller expects the collection's vectors cut to; another is an error."""
    collection = engine.resolve(name)
    info = engine.collection_info(collection)
    have = info.vectors.get(using)
    if have is None:
        hint = ("index it with an image-text model" if using else
                "it holds image-text pairs: search it with an image-text model")
        raise ValueError(f"collection {name!r} has no vector {using!r}; it holds {info.describe_vectors()}: {hint}")
    stored = info.metadata.get("identity") if using == DEFAULT_VECTOR else None
    indexed_by = ModelIdentity.from_dict(stored) if stored else None
    dim = indexed_by.truncate_dim if indexed_by else None
    model_dim = int(model.embedding_dim)
    if indexed_by and dim is not None and model_dim < dim:
        raise ValueError(f"collection {name!r} ({collection}) holds the first {dim} coordinates of "
                         f"{indexed_by.embedding_dim}-d vectors (index.dim={dim}), but the model writes {model_dim}-d "
                         "vectors; search it with the model that indexed it")
    size = dim if dim is not None else model_dim
    if expected_dim is not None and expected_dim != size:
        raise ValueError(f"index.dim={expected_dim}, but collection {name!r} ({collection}) holds "
                         f"{size}-d vectors: queries are cut to the collection's size by themselves, so "
                         f"drop index.dim when searching, or index the collection again with index.dim={expected_dim}")
    if have.size != size:
        raise ValueError(f"the model writes size={size} vectors but collection {name!r} ({collection}) holds "
                         f"size={have.size}; search it with the model that indexed it")
    check_same_model(info.metadata, model_identity(model, truncate_dim=dim), name, force, verb)
    fields = tuple(info.metadata["fields"]) if info.metadata.get("fields") else None
    check_filter_fields(filter, fields, name)
    sparse = dict(info.metadata.get("sparse") or {}) if SPARSE_VECTOR in info.sparse else None
    return Target(name, collection, id_field or str(info.metadata.get("id_field") or "id"), fields, dim,
                  sparse or None)


def resolve_mode(target: Target, mode: str | None) -> SearchMode:
    """``mode``, checked against the collection; None: ``hybrid`` where it has a sparse vector, else ``dense``."""
    if mode is None:
        return "hybrid" if target.sparse else "dense"
    if mode not in SEARCH_MODES:
        raise ValueError(f"search mode (--mode) must be one of {list(SEARCH_MODES)}, got {mode!r}")
    if mode != "dense" and not target.sparse:
        raise ValueError(f"a {mode} search needs sparse vectors, but collection {target.name!r} ({target.collection}) "
                         "holds dense vectors only: index it with index.sparse=bm25 (or index.sparse=<a sparse model "
                         "folder>) to make it hybrid, or search it with --mode dense")
    return mode  # type: ignore[return-value]


def query_sparse_source(target: Target, sparse: SparseSource | str | None, force: bool = False,
                        verb: str = "search") -> SparseSource:
    """The source that encodes the queries' sparse vectors: the given one (checked against the
    collection's: another vocabulary is an error naming both), else the one the collection records."""
    from textdml.index.sparse import check_sparse_source, load_sparse_source, source_of_collection

    assert target.sparse is not None  # resolve_mode refused a sparse search of a dense collection
    if sparse is None:
        return source_of_collection(target.sparse, target.name)
    source = load_sparse_source(sparse)
    assert source is not None
    check_sparse_source(target.sparse, source, target.name, force, verb)
    return source


@dataclass(frozen=True)
class EncodedQueries:
    """Queries as a search mode needs them: dense ``(Q, D)`` vectors, sparse vectors, or both."""

    dense: Any = None
    sparse: list[SparseValues] | None = None


def encode_queries(model: SupportsEncode, texts: Sequence[str], target: Target, modes: Sequence[str],
                   source: SparseSource | None, batch_size: int = 32) -> EncodedQueries:
    """Encode only the legs the ``modes`` use (a sparse-only search runs no dense model)."""
    dense = (encode_vectors(model, list(texts), role="query", dim=target.dim)
             if any(m != "sparse" for m in modes) else None)
    sparse = (source.encode(list(texts), kind="query", batch_size=batch_size)
              if source is not None and any(m != "dense" for m in modes) else None)
    return EncodedQueries(dense, sparse)


def to_hit(record: ScoredRecord, id_field: str) -> SearchHit:
    if id_field not in record.payload:
        raise ValueError(f"point {record.id} has no {id_field!r} payload field; pass the id_field used when indexing")
    return SearchHit(doc_id=str(record.payload[id_field]), score=record.score, payload=record.payload)


def search(
    model: SupportsEncode,
    engine: VectorEngine,
    collection: str,
    query: str | Sequence[str],
    top_k: int = 10,
    id_field: str | None = None,
    exact: bool = False,
    batch_size: int = 64,
    filter: Any = None,
    force: bool = False,
    options: SearchOptions | None = None,
    expected_dim: int | None = None,
    mode: SearchMode | None = None,
    fusion: Fusion | None = None,
    sparse: SparseSource | str | None = None,
) -> list[list[SearchHit]]:
    """The ``top_k`` nearest documents of each query, best first.

    Args:
        model: the encoder that indexed the collection.
        engine: from :func:`~textdml.index.open_client`.
        collection: a collection or an alias (versioned collections are searched by their alias).
        query: one query or a list of queries.
        top_k: hits per query.
        id_field: the payload field holding the document id (default: the one used when indexing).
        exact: brute-force search instead of the HNSW index.
        batch_size: queries sent together.
        filter: a qdrant-client ``models.Filter`` (see :func:`~textdml.index.filters.parse_filters`).
        force: search although the collection was indexed by another model.
        options: search-time settings (``ef``, quantization rescoring); ``exact`` overrides theirs.
        expected_dim: the vector size the caller expects (``index.dim``); queries are cut to the
            collection's recorded size anyway, so another size is an error rather than ignored.
        mode: ``dense``, ``sparse`` or ``hybrid`` (default: hybrid on a collection with sparse
            vectors, else dense); sparse and hybrid on a dense-only collection are an error.
        fusion: how hybrid search merges the legs (default: unweighted RRF).
        sparse: the queries' sparse source (``"bm25"``, a sparse model folder); default: the one
            the collection records. Another vocabulary than the collection's is an error.

    Returns:
        One list of :class:`SearchHit` per query (a single string query gives a list of one list).
    """
    check_top_k(top_k)  # before the model encodes anything
    engine = as_engine(engine)
    target = open_target(engine, collection, model, force=force, filter=filter, id_field=id_field,
                         expected_dim=expected_dim)
    mode = resolve_mode(target, mode)
    source = query_sparse_source(target, sparse, force) if mode != "dense" else None
    queries = [query] if isinstance(query, str) else list(query)
    encoded = encode_queries(model, queries, target, [mode], source)
    return search_encoded(engine, target, mode, encoded, top_k, filter, options, exact, batch_size, fusion)


def search_encoded(engine: VectorEngine, target: Target, mode: SearchMode, queries: EncodedQueries, top_k: int,
                   filter: Any = None, options: SearchOptions | None = None, exact: bool = False,
                   batch_size: int = 64, fusion: Fusion | None = None) -> list[list[SearchHit]]:
    """Search encoded queries by one mode: the dense leg, the sparse leg, or their fusion."""
    if mode == "dense":
        return search_vectors(engine, target, queries.dense, top_k, filter, options, exact, batch_size)
    check_top_k(top_k)
    assert queries.sparse is not None
    options = options or SearchOptions()
    if exact:
        options = SearchOptions(exact=True, ef=options.ef, rescore=options.rescore, oversampling=options.oversampling)
    results: list[list[SearchHit]] = []
    for start in range(0, len(queries.sparse), batch_size):
        sparse = queries.sparse[start : start + batch_size]
        if mode == "sparse":
            responses = engine.search_sparse(target.collection, sparse, top_k, filter=filter)
        else:
            responses = engine.search_hybrid(target.collection, queries.dense[start : start + batch_size], sparse,
                                             top_k, fusion or Fusion(), filter=filter, options=options)
        results += [[to_hit(record, target.id_field) for record in response] for response in responses]
    return results


def search_vectors(engine: VectorEngine, target: Target, vectors: Any, top_k: int, filter: Any = None,
                   options: SearchOptions | None = None, exact: bool = False, batch_size: int = 64,
                   using: str = DEFAULT_VECTOR) -> list[list[SearchHit]]:
    check_top_k(top_k)
    options = options or SearchOptions()
    if exact:
        options = SearchOptions(exact=True, ef=options.ef, rescore=options.rescore, oversampling=options.oversampling)
    results: list[list[SearchHit]] = []
    for start in range(0, len(vectors), batch_size):
        responses = engine.search(target.collection, vectors[start : start + batch_size], top_k, filter=filter,
                                  using=using, options=options)
        results += [[to_hit(record, target.id_field) for record in response] for response in responses]
    return results


def check_top_k(top_k: int) -> None:
    """0 hits would be an empty answer that looks like "nothing matched"; a negative count a crash in Qdrant."""
    try:
        count = operator.index(top_k)  # numpy integers too, but no floats or bools
    except TypeError:
        count = None
    if count is None or isinstance(top_k, bool) or count < 1:
        raise ValueError(f"top_k (--top-k) must be a positive integer (1 or more), got {top_k!r}")


def warn_if_other_model(results: list[list[SearchHit]], weights_sha256: str, collection: str) -> None:
    """Vectors from other weights live in another space: their scores against this model's queries mean nothing."""
    others = {hit.payload.get(MODEL_HASH_KEY) for hits in results for hit in hits} - {weights_sha256}
    if others:
        warnings.warn(
            f"collection {collection!r} holds points embedded by other weights "
            f"({MODEL_HASH_KEY} {sorted(map(str, others))}) than the query model ({weights_sha256}); "
            "re-index with this model",
            stacklevel=3,
        )


def index_recall(approximate: Sequence[Sequence[str]], exact: Sequence[Sequence[str]], k: int) -> float:
    """Mean share of the exact top-``k`` ids that the index (HNSW, quantization, a cut) also returned.

    Example:
        >>> index_recall([["a", "b"], ["c", "x"]], [["a", "b"], ["c", "d"]], k=2)
        0.75
    """
    shares = []
    for approx_ids, exact_ids in zip(approximate, exact, strict=True):
        truth = set(exact_ids[:k])
        if truth:
            shares.append(len(truth & set(approx_ids[:k])) / len(truth))
    return sum(shares) / len(shares) if shares else float("nan")


def hit_ids(results: list[list[SearchHit]]) -> list[list[str]]:
    return [[hit.doc_id for hit in hits] for hits in results]


def evaluate_through_collection(
    model: SupportsEncode,
    engine: VectorEngine,
    collection: str,
    queries: Mapping[str, str],
    relevant_docs: Mapping[str, set[str]],
    k_values: Sequence[int] = (1, 5, 10),
    id_field: str | None = None,
    name: str = "",
    exact: bool = False,
    mrr_at_k: int = 10,
    ndcg_at_k: int = 10,
    map_at_k: int = 100,
    filter: Any = None,
    force: bool = False,
    options: SearchOptions | None = None,
    with_index_recall: bool = False,
    exact_hits: Mapping[str, Sequence[tuple[str, float]]] | None = None,
    modes: Sequence[SearchMode] | None = None,
    fusion: Fusion | None = None,
    sparse: SparseSource | str | None = None,
) -> dict[str, float]:
    """Retrieval metrics of the collection as served: queries search the index, not an in-memory corpus.

    The metrics come from the same :func:`~textdml.evaluation.retrieval.compute_metrics` as
    :class:`~textdml.evaluation.retrieval.InformationRetrievalEvaluator`, so on an exact search the
    two agree. ``with_index_recall`` adds ``index_recall@k``: the share of the exact top-k that the
    approximate search returned, i.e. what HNSW and quantization cost. Hits embedded by other
    weights than ``model``'s give a warning: their scores mean nothing.

    Args:
        model: the encoder that indexed the collection.
        engine: from :func:`~textdml.index.open_client`.
        collection: a collection or an alias.
        queries: query id -> query text.
        relevant_docs: query id -> ids of the relevant documents; queries without any are skipped.
        k_values: cut-offs for accuracy, precision and recall (and index recall).
        id_field: the payload field holding the document id (default: the one used when indexing).
        name: prefix of the metric names.
        exact: brute-force search instead of the HNSW index.
        mrr_at_k: cut-off for MRR.
        ndcg_at_k: cut-off for nDCG.
        map_at_k: cut-off for MAP.
        filter: a qdrant-client ``models.Filter`` applied to every query.
        force: evaluate although the collection was indexed by another model.
        options: search-time settings.
        with_index_recall: also report ``index_recall@k`` against exact search.
        exact_hits: query id -> the exact ``(doc_id, score)`` ranking to measure ``index_recall@k``
            against instead of exact search through this collection (e.g. the full-size vectors of
            :meth:`InformationRetrievalEvaluator.search` for a collection of cut vectors); implies
            ``with_index_recall``.
        modes: the search modes to score. Default: ``dense``, ``sparse`` and ``hybrid`` on a
            hybrid collection, each metric prefixed by its mode (``dense_ndcg@10``,
            ``hybrid_ndcg@10``: side by side); ``dense`` alone, unprefixed, on a dense-only one.
            ``index_recall@k`` is the dense leg's.
        fusion: how the hybrid mode merges the legs (default: unweighted RRF).
        sparse: the queries' sparse source (default: the one the collection records).

    Returns:
        Metric name -> value, with the names of ``InformationRetrievalEvaluator``.
    """
    from textdml.evaluation.retrieval import compute_metrics, prefix_metrics

    engine = as_engine(engine)
    target = open_target(engine, collection, model, force=force, filter=filter, id_field=id_field)
    relevant = {str(qid): {str(doc_id) for doc_id in docs} for qid, docs in relevant_docs.items()}
    scored = {str(qid): text for qid, text in queries.items() if relevant.get(str(qid))}
    if not scored:
        raise ValueError("no query has a relevant document: check that the ids of queries and relevant_docs match")
    top_k = max(*k_values, mrr_at_k, ndcg_at_k, map_at_k)
    prefixed = modes is not None or target.sparse is not None
    modes = list(modes) if modes is not None else (list(SEARCH_MODES) if target.sparse else ["dense"])
    for mode in modes:
        resolve_mode(target, mode)
    source = query_sparse_source(target, sparse, force, "evaluate") if any(m != "dense" for m in modes) else None
    encoded = encode_queries(model, list(scored.values()), target, modes, source)
    vectors = encoded.dense
    metrics: dict[str, float] = {}
    for mode in modes:
        found = search_encoded(engine, target, mode, encoded, top_k, filter, options, exact, fusion=fusion)
        if mode == "dense":
            results = found
            warn_if_other_model(results, model.identity()["weights_sha256"], collection)
        hits = {qid: [(hit.doc_id, hit.score) for hit in query_hits] for qid, query_hits in zip(scored, found,
                                                                                                 strict=True)}
        metrics.update(prefix_metrics(compute_metrics(hits, relevant, k_values, mrr_at_k, ndcg_at_k, map_at_k),
                                      mode if prefixed else ""))
    if "dense" not in modes:
        return prefix_metrics(metrics, name)
    recall_name = "dense_index_recall" if prefixed else "index_recall"
    if exact_hits is not None:
        from textdml.evaluation.retrieval import rank_hits

        truth = [rank_hits(exact_hits[qid]) for qid in scored]
    elif with_index_recall:
        truth = hit_ids(results if exact else search_vectors(engine, target, vectors, max(k_values), filter, options,
                                                             True))
    if exact_hits is not None or with_index_recall:
        metrics.update({f"{recall_name}@{k}": index_recall(hit_ids(results), truth, k) for k in k_values})
    return prefix_metrics(metrics, name)
