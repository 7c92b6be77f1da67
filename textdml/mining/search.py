"""Where mining's candidates come from: the :class:`Searcher` seam and its two implementations.

A searcher answers one question: for each query vector, the ``k`` best corpus positions and their
scores. Mining (:func:`~textdml.mining.hard_negatives.mine_hard_negatives`) only calls
:meth:`Searcher.search`, so any object with that method plugs in:

- :class:`ExactSearcher`: exact inner products over corpus vectors held in memory, in blocks of
  queries (memory: the corpus vectors plus one ``(block, corpus)`` score matrix).
- :class:`CollectionSearcher`: a Qdrant collection (``textdml.index``), so mining sees what search
  will see. It brings documents of its own (the collection's), so it is a :class:`CorpusSearcher`:
  its positions index its ``corpus`` and it records what it searched beside the mined table.
  Opening one (creating, reusing or re-encoding a version) is :mod:`textdml.mining.collection_search`.
  Over a hybrid collection (``mine.mode: hybrid`` or ``sparse``) it is also a :class:`TextSearcher`:
  the sparse leg needs the query texts, so mining hands them over.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch

from textdml.index.engine import DEFAULT_VECTOR, Fusion, SearchOptions, VectorEngine
from textdml.index.searching import Target, search_vectors
from textdml.models.identity import ModelIdentity

if TYPE_CHECKING:
    from textdml.index.sparse import SparseSource

MiningMode = Literal["dense", "sparse", "hybrid"]


class Searcher(Protocol):
    """The candidates of each query: ``(scores, corpus positions)``, both ``(Q, k)``, best first.

    Positions index the mining corpus (the given corpus, then the positives it lacks, deduplicated);
    ``-inf`` scores / ``-1`` positions pad missing hits.
    """

    def search(self, query_vectors: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]: ...


@runtime_checkable
class CorpusSearcher(Searcher, Protocol):
    """A searcher over documents of its own: its positions index ``corpus`` (the task's documents
    first, in their order, then its own), and what it searched is part of the mining record."""

    corpus: list[str]

    def settings(self) -> dict[str, Any]:
        """What decides the candidates: fingerprinted, so other settings never resume these shards."""
        ...

    def record(self) -> dict[str, Any]:
        """:meth:`settings` plus what was searched this time, for the settings file beside the table."""
        ...


@runtime_checkable
class TextSearcher(Searcher, Protocol):
    """A searcher that also needs the query texts (a sparse or hybrid collection: BM25 reads words)."""

    def search_texts(self, query_vectors: torch.Tensor, texts: Sequence[str],
                     k: int) -> tuple[torch.Tensor, torch.Tensor]: ...


def text_key(text: str) -> bytes:
    """A document's key: equal texts, equal keys (deduplication, and the point ids of mining versions)."""
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


class ExactSearcher:
    """Exact inner-product search over corpus vectors held in memory, in blocks of queries."""

    def __init__(self, corpus_vectors: torch.Tensor, block_size: int = 1024):
        self.corpus_vectors = corpus_vectors  # (N, D)
        self.block_size = block_size

    def search(self, query_vectors: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = min(k, len(self.corpus_vectors))
        scores, positions = [], []
        for start in range(0, len(query_vectors), self.block_size):
            block = query_vectors[start : start + self.block_size] @ self.corpus_vectors.T  # (b, N)
            values, columns = torch.topk(block, k=k, dim=1)
            scores.append(values)
            positions.append(columns)
        return torch.cat(scores), torch.cat(positions)


class CollectionSearcher:
    """Candidates from a collection (plus, exactly in memory, the documents it lacks), as corpus positions.

    Made by :func:`~textdml.mining.collection_search.open_collection_searcher`, which says what it
    searches.

    Attributes:
        corpus: the documents the positions index (the task's, then those only the collection holds).
        collection: the name searched (alias or plain collection).
        version: the collection behind it that was searched.
        indexed: whether this searcher wrote that version (the collection was missing, or a re-mine).
        points: points in the searched version.
        identity: the model that indexed it (None for a collection without textdml metadata).
        mode: ``dense`` (the model's ranking), ``hybrid`` (the fused ranking of the dense and the
            sparse leg, ``fusion``) or ``sparse``. In hybrid and sparse mode the candidates are the
            top of that ranking, but their scores (for the margins and score caps, and in the mined
            table) stay the dense model's similarities, comparable with the positives' scores: the
            negatives are the documents the fusion ranks high that the model also scores below the positive.
        fusion: how hybrid mode fuses the legs.
        sparse_source: encodes the query texts' sparse vectors (the collection's own source).
    """

    def __init__(self, engine: VectorEngine, target: Target, text_field: str, corpus: list[str],
                 position: Mapping[str, int], outside: list[int], outside_vectors: torch.Tensor | None,
                 options: SearchOptions, indexed: bool, points: int, identity: ModelIdentity | None,
                 batch_size: int = 64, mode: MiningMode = "dense", fusion: Fusion | None = None,
                 sparse_source: SparseSource | None = None):
        self.engine = engine
        self.target = target
        self.text_field = text_field
        self.corpus = corpus
        self.position = position
        self.outside = torch.tensor(outside, dtype=torch.long)  # corpus positions searched in memory
        self.outside_searcher = ExactSearcher(outside_vectors) if outside_vectors is not None else None
        self.options = options
        self.indexed = indexed
        self.points = points
        self.identity = identity
        self.batch_size = batch_size
        if mode != "dense" and (sparse_source is None or not target.sparse):
            raise ValueError(f"mine.mode={mode} needs a hybrid collection, but {target.name!r} ({target.collection}) "
                             "holds dense vectors only: index it with index.sparse=bm25 (a missing mine.collection is "
                             "indexed with index.sparse), or use mine.mode=dense")
        self.mode = mode
        self.fusion = fusion or Fusion()
        self.sparse_source = sparse_source

    @property
    def collection(self) -> str:
        return self.target.name

    @property
    def version(self) -> str:
        return self.target.collection

    def settings(self) -> dict[str, Any]:
        """What decides the candidates (part of the mining fingerprint): name, search mode, vectors' model."""
        settings = {"name": self.collection, "engine": self.engine.kind, "exact": self.options.exact,
                    "ef": None if self.options.exact else self.options.ef,
                    "model": self.identity.to_dict(with_source=False) if self.identity else None}
        if self.mode != "dense":  # dense: the settings (and fingerprints) of mining before hybrid search
            settings.update(mode=self.mode, sparse=self.target.sparse,
                            fusion=dataclasses.asdict(self.fusion) if self.mode == "hybrid" else None)
        return settings

    def record(self) -> dict[str, Any]:
        """:meth:`settings` plus which version was searched, for the settings file beside the table."""
        return {**self.settings(), "version": self.version, "indexed": self.indexed, "points": self.points,
                "searched_in_memory": len(self.outside)}

    def search(self, query_vectors: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores, corpus positions)``, both ``(Q, k)``, best first; ``-inf`` / ``-1`` pad missing hits."""
        if self.mode != "dense":
            raise ValueError(f"mine.mode={self.mode} searches by the query texts too: call search_texts")
        return self.search_texts(query_vectors, [], k)

    def search_texts(self, query_vectors: torch.Tensor, texts: Sequence[str],
                     k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`search` by this searcher's mode; ``texts`` are the queries' texts (the sparse leg's input)."""
        k = min(k, len(self.corpus))
        vectors = query_vectors.float().cpu().numpy()  # (Q, D)
        if self.mode == "dense":
            hits = [[(hit.score, hit.payload) for hit in query_hits] for query_hits in search_vectors(
                self.engine, self.target, vectors, k, options=self.options, batch_size=self.batch_size)]
        else:
            hits = self.ranked_with_dense_scores(vectors, texts, k)
        scores = torch.full((len(query_vectors), k), -float("inf"))  # (Q, k)
        positions = torch.full((len(query_vectors), k), -1, dtype=torch.long)
        for q, query_hits in enumerate(hits):
            seen: set[int] = set()
            for score, payload in query_hits:
                p = self.position_of(payload)
                if p in seen:  # the same text under two ids: one candidate
                    continue
                scores[q, len(seen)], positions[q, len(seen)] = score, p
                seen.add(p)
        if self.outside_searcher is None:
            return scores, positions
        outside_scores, local = self.outside_searcher.search(query_vectors.float().cpu(), k)
        merged_scores = torch.cat([scores, outside_scores], dim=1)
        merged_positions = torch.cat([positions, self.outside[local]], dim=1)
        scores, best = torch.topk(merged_scores, k=k, dim=1)
        return scores, torch.gather(merged_positions, 1, best)

    def ranked_with_dense_scores(self, vectors: np.ndarray, texts: Sequence[str],
                                 k: int) -> list[list[tuple[float, dict[str, Any]]]]:
        """The top ``k`` of the fused (or sparse) ranking of each query, each with the dense model's
        similarity to the query, computed from the stored vector (read back by point id)."""
        if len(texts) != len(vectors):
            raise ValueError(f"mine.mode={self.mode}: {len(vectors)} query vectors but {len(texts)} query texts")
        assert self.sparse_source is not None
        similarity = self.identity.similarity if self.identity else "cosine"
        ranked: list[list[tuple[float, dict[str, Any]]]] = []
        for start in range(0, len(vectors), self.batch_size):
            block, block_texts = vectors[start : start + self.batch_size], list(texts[start : start + self.batch_size])
            queries = self.sparse_source.encode(block_texts, kind="query")
            if self.mode == "hybrid":
                responses = self.engine.search_hybrid(self.target.collection, block, queries, k, self.fusion,
                                                      options=self.options)
            else:
                responses = self.engine.search_sparse(self.target.collection, queries, k)
            wanted = list(dict.fromkeys(record.id for response in responses for record in response))
            stored = {record.id: dense_vector(record.vector)
                      for record in self.engine.retrieve(self.target.collection, wanted, with_vectors=True)}
            for query, response in zip(block, responses, strict=True):
                ranked.append([(similarity_of(query, stored[record.id], similarity), record.payload)
                               for record in response])
        return ranked

    def position_of(self, payload: Mapping[str, Any]) -> int:
        text = payload.get(self.text_field)
        if text not in self.position:
            raise ValueError(f"collection {self.collection!r} ({self.version}) returned a document that was not in "
                             "it when mining started (it changed under the run); mine again")
        return self.position[text]


def dense_vector(stored: Any) -> np.ndarray:
    """The dense vector of a point read back (alone, or the unnamed one beside the sparse vector)."""
    return np.asarray(stored[DEFAULT_VECTOR] if isinstance(stored, Mapping) else stored, dtype=np.float32)


def similarity_of(query: np.ndarray, document: np.ndarray, similarity: str) -> float:
    """The score the dense search would give: cosine (the engine normalises stored vectors) or dot."""
    if similarity == "cosine":
        norms = float(np.linalg.norm(query) * np.linalg.norm(document))
        return float(query @ document) / norms if norms > 0 else 0.0
    return float(query @ document)
