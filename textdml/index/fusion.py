"""Weighted distribution-based score fusion, for the one case the engines do not fuse themselves.

Qdrant (server, local mode and Edge) fuses a hybrid query natively with RRF, weighted or not, and
with DBSF, unweighted. ``index.fusion: dbsf`` with unequal ``index.fusion_weights`` searches both
legs apart and fuses them here, by Qdrant's own DBSF formula (qdrant-client's
``hybrid/fusion.py``) with each leg's normalised scores multiplied by its weight: with equal
weights it gives the engine's ranking, which a test checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, TypeVar

# A search hit: a frozen dataclass with ``id`` and ``score`` (``textdml.index.engine.ScoredRecord``),
# taken generically so that the engine module, which calls this, is not imported back.
Hit = TypeVar("Hit")


def normalize_scores(hits: Sequence[Any]) -> list[float]:
    """Each score mapped by ``(score - (mean - 3 std)) / (6 std)`` (sample std); 0.5 when all are equal."""
    if len(hits) == 1:
        return [0.5]
    scores = [hit.score for hit in hits]
    mean = sum(scores) / len(scores)
    variance = sum((score - mean) ** 2 for score in scores) / (len(scores) - 1)
    if variance == 0:
        return [0.5] * len(scores)
    low, spread = mean - 3 * variance**0.5, 6 * variance**0.5
    return [(score - low) / spread for score in scores]


def weighted_dbsf(legs: Sequence[Sequence[Hit]], weights: Sequence[float] | None, top_k: int) -> list[Hit]:
    """The ``top_k`` best points of the legs' weighted, normalised scores summed per point id.

    Example:
        >>> from textdml.index.engine import ScoredRecord
        >>> dense = [ScoredRecord("a", 0.9, {}), ScoredRecord("b", 0.5, {})]
        >>> sparse = [ScoredRecord("b", 7.0, {}), ScoredRecord("c", 1.0, {})]
        >>> [hit.id for hit in weighted_dbsf([dense, sparse], [1.0, 3.0], top_k=3)]
        ['b', 'c', 'a']
    """
    weights = list(weights) if weights is not None else [1.0] * len(legs)
    if len(weights) != len(legs):
        raise ValueError(f"{len(weights)} fusion weights for {len(legs)} rankings: give one weight per ranking")
    fused: dict[Any, float] = {}
    first: dict[Any, Hit] = {}
    for hits, weight in zip(legs, weights, strict=True):
        if not hits:
            continue
        for hit, score in zip(hits, normalize_scores(hits), strict=True):
            point_id = hit.id  # type: ignore[attr-defined]
            fused[point_id] = fused.get(point_id, 0.0) + weight * score
            first.setdefault(point_id, hit)
    ranked = sorted(fused.items(), key=lambda item: item[1], reverse=True)[:top_k]
    return [dataclasses.replace(first[point_id], score=score) for point_id, score in ranked]  # type: ignore[type-var]
