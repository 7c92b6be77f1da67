"""Vector index: engines (Qdrant Edge, qdrant-client), versioned collections, streaming indexing, search."""

from textdml.index.engine import CollectionOptions, SearchOptions, VectorEngine
from textdml.index.evaluate_index import StorageRow, compare_storage, format_storage_table
from textdml.index.filters import parse_filters
from textdml.index.qdrant import (
    IndexReport,
    SearchHit,
    ensure_collection,
    evaluate_through_collection,
    index_documents,
    open_client,
    open_index,
    point_id,
    search,
)
from textdml.index.versions import delete_version, list_versions, rollback

__all__ = [
    "CollectionOptions",
    "IndexReport",
    "SearchHit",
    "SearchOptions",
    "StorageRow",
    "VectorEngine",
    "compare_storage",
    "delete_version",
    "ensure_collection",
    "evaluate_through_collection",
    "format_storage_table",
    "index_documents",
    "list_versions",
    "open_client",
    "open_index",
    "parse_filters",
    "point_id",
    "rollback",
    "search",
]
