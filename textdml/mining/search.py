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
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import torch

from textdml.index.engine import SearchOptions, VectorEngine
from textdml.index.searching import Target, search_vectors
from textdml.models.identity import ModelIdentity


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
    """

    def __init__(self, engine: VectorEngine, target: Target, text_field: str, corpus: list[str],
                 position: Mapping[str, int], outside: list[int], outside_vectors: torch.Tensor | None,
                 options: SearchOptions, indexed: bool, points: int, identity: ModelIdentity | None,
                 batch_size: int = 64):
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

    @property
    def collection(self) -> str:
        return self.target.name

    @property
    def version(self) -> str:
        return self.target.collection

    def settings(self) -> dict[str, Any]:
        """What decides the candidates (part of the mining fingerprint): name, search mode, vectors' model."""
        return {"name": self.collection, "engine": self.engine.kind, "exact": self.options.exact,
                "ef": None if self.options.exact else self.options.ef,
                "model": self.identity.to_dict(with_source=False) if self.identity else None}

    def record(self) -> dict[str, Any]:
        """:meth:`settings` plus which version was searched, for the settings file beside the table."""
        return {**self.settings(), "version": self.version, "indexed": self.indexed, "points": self.points,
                "searched_in_memory": len(self.outside)}

    def search(self, query_vectors: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores, corpus positions)``, both ``(Q, k)``, best first; ``-inf`` / ``-1`` pad missing hits."""
        k = min(k, len(self.corpus))
        hits = search_vectors(self.engine, self.target, query_vectors.float().cpu().numpy(), k,
                              options=self.options, batch_size=self.batch_size)
        scores = torch.full((len(query_vectors), k), -float("inf"))  # (Q, k)
        positions = torch.full((len(query_vectors), k), -1, dtype=torch.long)
        for q, query_hits in enumerate(hits):
            seen: set[int] = set()
            for hit in query_hits:
                p = self.position_of(hit.payload)
                if p in seen:  # the same text under two ids: one candidate
                    continue
                scores[q, len(seen)], positions[q, len(seen)] = hit.score, p
                seen.add(p)
        if self.outside_searcher is None:
            return scores, positions
        outside_scores, local = self.outside_searcher.search(query_vectors.float().cpu(), k)
        merged_scores = torch.cat([scores, outside_scores], dim=1)
        merged_positions = torch.cat([positions, self.outside[local]], dim=1)
        scores, best = torch.topk(merged_scores, k=k, dim=1)
        return scores, torch.gather(merged_positions, 1, best)

    def position_of(self, payload: Mapping[str, Any]) -> int:
        text = payload.get(self.text_field)
        if text not in self.position:
            raise ValueError(f"collection {self.collection!r} ({self.version}) returned a document that was not in "
                             "it when mining started (it changed under the run); mine again")
        return self.position[text]
