"""Information retrieval metrics: each query ranks a corpus; Recall@k, MRR, nDCG and MAP score the ranking.

The metrics are computed from *hits* (for each query id, a list of ``(doc_id, score)``) by one
function, :func:`compute_metrics`, whatever produced the hits: the exact search of
:class:`InformationRetrievalEvaluator` or a search through a Qdrant collection
(``textdml.index.qdrant.evaluate_through_collection``). The definitions are those of
sentence-transformers' ``InformationRetrievalEvaluator``.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from textdml.registry import EVALUATORS

if TYPE_CHECKING:
    from textdml.models.protocols import SupportsEncode

logger = logging.getLogger(__name__)

#: query id -> retrieved ``(doc_id, score)``, in any order.
Hits = Mapping[str, Sequence[tuple[str, float]]]

# Queries scored against one corpus chunk at a time: bounds the (queries, chunk) score matrix.
QUERY_BLOCK_SIZE = 1024
# A sparse (SPLADE) model's vectors are vocabulary-sized (30,522 floats for BERT's): fewer
# documents per chunk keep a chunk near 250 MB.
SPARSE_CHUNK_SIZE = 2048


def rank_hits(hits: Iterable[tuple[str, float]]) -> list[str]:
    """Document ids by descending score; equal scores in ascending id order (sentence-transformers' order)."""
    return [doc_id for doc_id, _ in sorted(hits, key=lambda hit: (-hit[1], hit[0]))]


def dcg(relevances: Sequence[int]) -> float:
    """Discounted cumulative gain of a ranked list of 0/1 relevances."""
    return sum(relevance / math.log2(rank + 2) for rank, relevance in enumerate(relevances))


def query_metrics(
    ranked_ids: Sequence[str],
    relevant: set[str],
    k_values: Sequence[int],
    mrr_at_k: int,
    ndcg_at_k: int,
    map_at_k: int,
) -> dict[str, float]:
    """Every metric for one query, given its ranked document ids and its relevant ids."""
    is_relevant = [doc_id in relevant for doc_id in ranked_ids]
    metrics: dict[str, float] = {}
    for k in k_values:
        found = sum(is_relevant[:k])
        metrics[f"accuracy@{k}"] = float(found > 0)
        metrics[f"precision@{k}"] = found / k
        metrics[f"recall@{k}"] = found / len(relevant)
    first_rank = next((rank for rank, hit in enumerate(is_relevant[:mrr_at_k], start=1) if hit), None)
    metrics[f"mrr@{mrr_at_k}"] = 1.0 / first_rank if first_rank else 0.0
    ideal = [1] * min(len(relevant), ndcg_at_k)
    metrics[f"ndcg@{ndcg_at_k}"] = dcg([int(hit) for hit in is_relevant[:ndcg_at_k]]) / dcg(ideal)
    precisions_at_hits = []
    for rank, hit in enumerate(is_relevant[:map_at_k], start=1):
        if hit:
            precisions_at_hits.append((len(precisions_at_hits) + 1) / rank)
    metrics[f"map@{map_at_k}"] = sum(precisions_at_hits) / min(map_at_k, len(relevant))
    return metrics


def compute_metrics(
    hits: Hits,
    relevant_docs: Mapping[str, set[str]],
    k_values: Sequence[int] = (1, 5, 10),
    mrr_at_k: int = 10,
    ndcg_at_k: int = 10,
    map_at_k: int = 100,
) -> dict[str, float]:
    """Average the retrieval metrics over the queries of ``hits`` that have a relevant document.

    For each k in ``k_values``: ``accuracy@k`` (a relevant document in the top k), ``precision@k``
    (relevant share of the top k) and ``recall@k`` (share of the relevant documents found in the top
    k); then ``mrr@10`` (reciprocal rank of the first relevant hit), ``ndcg@10`` (binary relevance)
    and ``map@100``. Queries without relevant documents are skipped, as in sentence-transformers.

    Args:
        hits: query id -> ``(doc_id, score)`` pairs, in any order (ranked here by descending score,
            ties by ascending id). At least ``max(k)`` hits per query, or the metrics count the
            missing ones as not relevant.
        relevant_docs: query id -> ids of its relevant documents.
        k_values: cut-offs for accuracy, precision and recall.
        mrr_at_k: cut-off for MRR.
        ndcg_at_k: cut-off for nDCG.
        map_at_k: cut-off for MAP.

    Returns:
        Metric name -> value averaged over the queries, e.g. ``{"recall@1": ..., "ndcg@10": ...}``.

    Example:
        >>> hits = {"q1": [("a", 0.9), ("b", 0.8)], "q2": [("a", 0.7), ("b", 0.2)]}
        >>> metrics = compute_metrics(hits, {"q1": {"a"}, "q2": {"b"}}, k_values=(1, 2))
        >>> metrics["recall@1"], metrics["recall@2"], metrics["mrr@10"]
        (0.5, 1.0, 0.75)
    """
    cutoffs = (*k_values, mrr_at_k, ndcg_at_k, map_at_k)
    if any(k < 1 for k in cutoffs):
        raise ValueError(f"every cut-off k must be >= 1, got k_values={tuple(k_values)}, "
                         f"mrr_at_k={mrr_at_k}, ndcg_at_k={ndcg_at_k}, map_at_k={map_at_k}")
    per_query = [
        query_metrics(rank_hits(query_hits), set(relevant_docs[qid]), k_values, mrr_at_k, ndcg_at_k, map_at_k)
        for qid, query_hits in hits.items()
        if relevant_docs.get(qid)
    ]
    if not per_query:
        raise ValueError("no query of the hits has a relevant document: check that the query ids of hits "
                         "and relevant_docs match")
    return {name: sum(metrics[name] for metrics in per_query) / len(per_query) for name in per_query[0]}


def prefix_metrics(metrics: Mapping[str, float], name: str) -> dict[str, float]:
    """``{"recall@1": x}`` -> ``{"<name>_recall@1": x}`` (unchanged when ``name`` is empty)."""
    prefix = f"{name}_" if name else ""
    return {f"{prefix}{key}": value for key, value in metrics.items()}


def format_table(results: Mapping[str, float]) -> str:
    """An aligned text table of metric -> value (4 decimals), in the order given.

    Matryoshka metrics (``<name>_dim<d>_<metric>``) become columns, one per size, so each metric
    stays one row however many sizes were scored.

    Example:
        >>> print(format_table({"recall@1": 0.5, "ndcg@10": 0.75}))
        metric      value
        recall@1   0.5000
        ndcg@10    0.7500
        >>> print(format_table({"ndcg@10": 0.75, "dim64_ndcg@10": 0.5}))
        metric      value   dim64
        ndcg@10    0.7500  0.5000
    """
    from textdml.console import split_sizes

    full, sized = split_sizes(results)
    dims = sorted(sized, reverse=True)
    names = list(dict.fromkeys([*full, *(name for d in dims for name in sized[d])]))
    width = max([len("metric"), *(len(name) for name in names)])
    lines = [f"{'metric':<{width}}  {'value':>6}" + "".join(f"  {f'dim{d}':>6}" for d in dims)]
    for name in names:
        cells = [full.get(name), *(sized[d].get(name) for d in dims)]
        lines.append(f"{name:<{width}}" + "".join(f"  {'':>6}" if v is None else f"  {v:>6.4f}" for v in cells))
    return "\n".join(lines)


def merge_top_k(scores: torch.Tensor, positions: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best candidates of each row: highest score first, equal scores in ascending position.

    ``scores`` and ``positions`` are ``(Q, M)``; a stable sort keeps the result independent of the
    order the candidates came in, so a chunked search returns exactly what an unchunked one does.
    """
    by_position = positions.argsort(dim=1)
    scores, positions = scores.gather(1, by_position), positions.gather(1, by_position)
    best = scores.sort(dim=1, descending=True, stable=True).indices[:, :k]
    return scores.gather(1, best), positions.gather(1, best)


def chunk_top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``topk`` over the columns of ``scores`` (Q, C), resolving ties at the cut-off by lowest column.

    ``torch.topk`` breaks ties arbitrarily; rows with a tie across the k-th score (duplicate
    documents) are re-selected with a stable sort, so the chosen set does not depend on the chunking.
    """
    values, columns = scores.topk(k, dim=1)  # (Q, k)
    tied_at_cutoff = (scores >= values[:, -1:]).sum(dim=1) > k
    if tied_at_cutoff.any():
        tied_scores = scores[tied_at_cutoff]
        stable_columns = tied_scores.sort(dim=1, descending=True, stable=True).indices[:, :k]
        columns[tied_at_cutoff] = stable_columns
        values[tied_at_cutoff] = tied_scores.gather(1, stable_columns)
    return values, columns


def exact_top_k(
    query_embeddings: torch.Tensor,
    corpus_chunks: Iterable[torch.Tensor],
    k: int,
    query_block_size: int = QUERY_BLOCK_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact inner-product search over a corpus given chunk by chunk, keeping a running top-k.

    Only one chunk of corpus embeddings and one ``(query_block_size, chunk)`` score matrix are in
    memory at a time. Equal scores rank the lower corpus position first.

    Args:
        query_embeddings: ``(Q, D)``, already normalised for cosine similarity.
        corpus_chunks: ``(C_i, D)`` tensors, in corpus order.
        k: how many documents to keep per query.
        query_block_size: queries scored together against a chunk.

    Returns:
        ``(scores, positions)``, both ``(Q, min(k, corpus size))``, best first; positions index the
        whole corpus.
    """
    num_queries = query_embeddings.shape[0]
    device = query_embeddings.device
    best_scores = torch.empty(num_queries, 0, dtype=query_embeddings.dtype, device=device)
    best_positions = torch.empty(num_queries, 0, dtype=torch.long, device=device)
    offset = 0
    for chunk in corpus_chunks:
        chunk = chunk.to(device=device, dtype=query_embeddings.dtype)
        chunk_k = min(k, chunk.shape[0])
        block_scores, block_positions = [], []
        for start in range(0, num_queries, query_block_size):
            scores = query_embeddings[start : start + query_block_size] @ chunk.T  # (q, C)
            values, columns = chunk_top_k(scores, chunk_k)
            block_scores.append(values)
            block_positions.append(columns + offset)
        candidate_scores = torch.cat([best_scores, torch.cat(block_scores)], dim=1)
        candidate_positions = torch.cat([best_positions, torch.cat(block_positions)], dim=1)
        best_scores, best_positions = merge_top_k(candidate_scores, candidate_positions, k)
        offset += chunk.shape[0]
    return best_scores, best_positions


def prompt_arguments(model: SupportsEncode, role: Literal["query", "document"] | None) -> dict[str, str]:
    """``{"prompt": ...}`` for a model with a prompt for ``role``; nothing for other encoders."""
    prompt = (getattr(model, "prompts", None) or {}).get(role or "", "")
    return {"prompt": prompt} if prompt else {}


def encode_for_search(model: SupportsEncode, texts: list[str], batch_size: int,
                      show_progress_bar: bool | None = None,
                      role: Literal["query", "document"] | None = None) -> torch.Tensor:
    """Embed ``texts`` as float32 (with the model's prompt for ``role``), normalised when the model
    scores by cosine similarity."""
    if model.similarity not in ("cosine", "dot"):
        raise ValueError(f"model.similarity must be 'cosine' or 'dot', got {model.similarity!r}")
    embeddings = model.encode(texts, batch_size=batch_size, show_progress_bar=show_progress_bar, convert_to="torch",
                              **prompt_arguments(model, role))
    embeddings = torch.as_tensor(embeddings).float()  # (N, D)
    return F.normalize(embeddings, dim=-1) if model.similarity == "cosine" else embeddings


def truncated(embeddings: torch.Tensor, dim: int | None, similarity: str) -> torch.Tensor:
    """The first ``dim`` coordinates (a Matryoshka size), re-normalised for cosine similarity."""
    if dim is None:
        return embeddings
    embeddings = embeddings[:, :dim]
    return F.normalize(embeddings, dim=-1) if similarity == "cosine" else embeddings


@EVALUATORS.register("information_retrieval")
class InformationRetrievalEvaluator:
    """Retrieval quality of a text encoder: each query searches the corpus, metrics score the ranking.

    Queries and corpus are embedded by the model and scored by the similarity it was trained
    with (``model.similarity``: cosine or dot). The search is exact and runs over corpus chunks with
    a running top-k, so a corpus of hundreds of thousands of documents fits in memory. Metrics are
    those of :func:`compute_metrics` (``accuracy@k``, ``precision@k``, ``recall@k`` for each k,
    ``mrr@10``, ``ndcg@10``, ``map@100``), prefixed by ``name`` when given (``wordnet_recall@1``).

    Args:
        queries: query id -> query text.
        corpus: document id -> document text.
        relevant_docs: query id -> ids of the relevant documents. Queries without any are skipped.
        name: prefix of the metric names (``"<name>_recall@1"``).
        k_values: cut-offs for accuracy, precision and recall.
        batch_size: encoding batch size.
        chunk_size: documents encoded and scored at a time.
        show_progress_bar: passed to ``model.encode`` (None: the model's default); True also shows
            a bar over corpus chunks.
        mrr_at_k: cut-off for MRR.
        ndcg_at_k: cut-off for nDCG (and the primary metric).
        map_at_k: cut-off for MAP.
        truncate_dims: Matryoshka sizes to score too: the vectors cut to each size (re-normalised)
            give metrics named ``<name>_dim<d>_...`` beside the full-size ones, from one encoding.

    Conventions:
        Equal scores rank documents by ascending id, as in sentence-transformers, so results do not
        depend on ``chunk_size``. Ids are compared as strings (``str`` is applied to every id).

    Example:
        >>> evaluator = InformationRetrievalEvaluator(
        ...     queries={"q1": "a cat"}, corpus={"d1": "a cat sat", "d2": "stock prices"},
        ...     relevant_docs={"q1": {"d1"}}, name="toy")
        >>> evaluator.primary_metric
        'toy_ndcg@10'
    """

    def __init__(
        self,
        queries: Mapping[str, str],
        corpus: Mapping[str, str],
        relevant_docs: Mapping[str, set[str]],
        name: str = "",
        k_values: Sequence[int] = (1, 5, 10),
        batch_size: int = 64,
        chunk_size: int = 50000,
        show_progress_bar: bool | None = None,
        mrr_at_k: int = 10,
        ndcg_at_k: int = 10,
        map_at_k: int = 100,
        truncate_dims: Sequence[int] | None = None,
    ):
        if chunk_size < 1 or batch_size < 1:
            raise ValueError(f"chunk_size and batch_size must be >= 1, got {chunk_size} and {batch_size}")
        if not corpus:
            raise ValueError("the corpus is empty")
        self.relevant_docs = {str(qid): {str(doc_id) for doc_id in docs} for qid, docs in relevant_docs.items()}
        # Queries without a relevant document cannot be scored; sentence-transformers skips them too.
        scored = {str(qid): text for qid, text in queries.items() if self.relevant_docs.get(str(qid))}
        if not scored:
            raise ValueError("no query has a relevant document: check that the ids of queries and relevant_docs match")
        self.query_ids = list(scored)
        self.queries = list(scored.values())
        # Corpus in ascending id order: ties broken by position are then broken by id.
        documents = {str(doc_id): text for doc_id, text in corpus.items()}
        self.corpus_ids = sorted(documents)
        self.corpus = [documents[doc_id] for doc_id in self.corpus_ids]
        warn_missing_relevant(self.relevant_docs, self.query_ids, documents)

        self.name = name
        self.k_values = tuple(k_values)
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.show_progress_bar = show_progress_bar
        self.mrr_at_k, self.ndcg_at_k, self.map_at_k = mrr_at_k, ndcg_at_k, map_at_k
        self.truncate_dims = sorted({int(d) for d in truncate_dims or []}, reverse=True)
        if any(d < 1 for d in self.truncate_dims):
            raise ValueError(f"truncate_dims must be positive sizes, got {list(truncate_dims or [])}")
        self.primary_metric = f"{name}_ndcg@{ndcg_at_k}" if name else f"ndcg@{ndcg_at_k}"

    @property
    def metric_names(self) -> list[str]:
        """The keys ``__call__`` returns: ``training.metric_for_best_model`` is checked against them."""
        names = query_metrics([], {""}, self.k_values, self.mrr_at_k, self.ndcg_at_k, self.map_at_k)
        return [key for dim in [None, *self.truncate_dims] for key in prefix_metrics(names, self.size_name(dim))]

    def size_name(self, dim: int | None) -> str:
        """The prefix of the metrics of vectors cut to ``dim`` (None: full size)."""
        return self.name if dim is None else "_".join(part for part in (self.name, f"dim{dim}") if part)

    @property
    def max_k(self) -> int:
        return max(*self.k_values, self.mrr_at_k, self.ndcg_at_k, self.map_at_k)

    def __call__(self, model: SupportsEncode) -> dict[str, float]:
        """Search with ``model`` and return the metrics, e.g. ``{"recall@1": 0.61, ..., "map@100": 0.55}``."""
        # Debug only: the CLI prints the table and the training loop one line per evaluation.
        too_large = [d for d in self.truncate_dims if d > model.embedding_dim]
        if too_large:
            raise ValueError(f"truncate_dims {too_large} exceed the model's embedding size {model.embedding_dim}")
        results: dict[str, float] = {}
        active_dims = ActiveDims() if is_sparse(model) else None
        for dim, hits in self.search_at_sizes(model, active_dims).items():
            metrics = compute_metrics(hits, self.relevant_docs, self.k_values, self.mrr_at_k, self.ndcg_at_k,
                                      self.map_at_k)
            results.update(prefix_metrics(metrics, self.size_name(dim)))
        if active_dims is not None:  # sparsity next to quality: what a search costs
            results.update(prefix_metrics(active_dims.means(), self.name))
        logger.debug("Information retrieval %s (%d queries, %d documents):\n%s",
                    self.name, len(self.query_ids), len(self.corpus), format_table(results))
        return results

    def search(self, model: SupportsEncode) -> dict[str, list[tuple[str, float]]]:
        """Exact search: the top ``max_k`` ``(doc_id, score)`` of every query, best first."""
        return self.search_at_sizes(model)[None]

    def search_at_sizes(self, model: SupportsEncode, active_dims: ActiveDims | None = None,
                        ) -> dict[int | None, dict[str, list[tuple[str, float]]]]:
        """``search`` at full size (key None) and at each of ``truncate_dims``, from one encoding.

        ``active_dims`` (a sparse model) counts the non-zero weights of every query and document.
        """
        chunk_size = self.chunk_size
        if is_sparse(model):
            if self.truncate_dims:
                raise ValueError(f"truncate_dims {self.truncate_dims} cut Matryoshka vectors; a sparse model's "
                                 "dimensions are vocabulary tokens: drop eval.truncate_dims")
            chunk_size = min(chunk_size, SPARSE_CHUNK_SIZE)
        active_dims = active_dims or ActiveDims()
        query_embeddings = active_dims.count("query", encode_for_search(model, self.queries, self.batch_size,
                                                                        self.show_progress_bar, "query"))
        starts = range(0, len(self.corpus), chunk_size)
        chunks = (
            active_dims.count("corpus", encode_for_search(model, self.corpus[start : start + chunk_size],
                                                          self.batch_size, self.show_progress_bar, "document"))
            for start in tqdm(starts, desc="Corpus chunks", disable=not self.show_progress_bar)
        )
        dims: list[int | None] = [None, *self.truncate_dims]
        if len(dims) > 1:  # every size scores the same chunks: keep them (N x D floats)
            chunks = list(chunks)
        results = {}
        for dim in dims:
            sized_chunks = (truncated(chunk, dim, model.similarity) for chunk in chunks)
            scores, positions = exact_top_k(truncated(query_embeddings, dim, model.similarity), sized_chunks,
                                            self.max_k)
            results[dim] = {
                qid: [(self.corpus_ids[p], score) for p, score in zip(row_positions, row_scores, strict=True)]
                for qid, row_positions, row_scores in zip(self.query_ids, positions.tolist(), scores.tolist(),
                                                          strict=True)
            }
        return results


def is_sparse(model: object) -> bool:
    from textdml.models.saving import model_kind

    return model_kind(model) == "sparse"


class ActiveDims:
    """Running mean of the non-zero coordinates per row, for queries and for the corpus (sparsity);
    named as in sentence-transformers' ``SparseInformationRetrievalEvaluator``."""

    def __init__(self) -> None:
        self.totals = {name: 0 for name in ("query", "corpus")}
        self.rows = {name: 0 for name in ("query", "corpus")}

    def count(self, side: Literal["query", "corpus"], embeddings: torch.Tensor) -> torch.Tensor:
        self.totals[side] += int((embeddings != 0).sum())
        self.rows[side] += len(embeddings)
        return embeddings

    def means(self) -> dict[str, float]:
        """``{"query_active_dims": ..., "corpus_active_dims": ...}``."""
        return {f"{side}_active_dims": self.totals[side] / max(self.rows[side], 1) for side in self.totals}


def warn_missing_relevant(relevant_docs: Mapping[str, set[str]], query_ids: Sequence[str],
                          corpus: Mapping[str, str]) -> None:
    """Warn when relevant ids are absent from the corpus: they can never be retrieved."""
    missing = sorted({doc_id for qid in query_ids for doc_id in relevant_docs[qid] if doc_id not in corpus})
    if missing:
        warnings.warn(
            f"{len(missing)} relevant document ids are not in the corpus (e.g. {missing[:3]}); they count as "
            "never retrieved",
            stacklevel=3,
        )
