"""Vector index: Qdrant collection setup, batched idempotent upsert, search and evaluation."""

from textdml.index.qdrant import (
    SearchHit,
    ensure_collection,
    evaluate_through_collection,
    index_documents,
    open_client,
    point_id,
    search,
)

__all__ = [
    "SearchHit",
    "ensure_collection",
    "evaluate_through_collection",
    "index_documents",
    "open_client",
    "point_id",
    "search",
]
