"""Documents on their way into an index: deterministic point ids, row checks, payloads, batches."""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from textdml.index.engine import VectorEngine
    from textdml.models.protocols import SupportsEncode

# Payload keys recording which weights produced a point's vector.
MODEL_NAME_KEY = "model_name"
MODEL_HASH_KEY = "model_weights_sha256"
# Fixed forever: changing it would give every document a new point id and duplicate the collection.
POINT_ID_NAMESPACE = uuid.UUID("5b1f3a52-6f0e-4c55-9a4e-2d7c1f0b9e61")
NAMESPACE_BYTES = POINT_ID_NAMESPACE.bytes


def point_id(doc_id: str | int) -> str:
    """The Qdrant point id of a document: a UUID5 of its id, the same in every run.

    Example:
        >>> point_id("d001") == point_id("d001") != point_id("d002")
        True
    """
    # uuid.uuid5 by hand (SHA-1 of namespace + name, version 5, RFC 4122 variant), without building a
    # UUID object: the same string, at a fifth of the cost (it ran once per document).
    digest = bytearray(hashlib.sha1(NAMESPACE_BYTES + str(doc_id).encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def batches(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of ``size`` rows (the last may be shorter), reading ``rows`` lazily."""
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def document_payload(
    row: Any, row_number: int, id_field: str, text_field: str, model_fields: Mapping[str, str]
) -> dict[str, Any]:
    """The payload stored with a document: its fields plus the model identity, after checking the row."""
    if not isinstance(row, Mapping):
        raise ValueError(f"row {row_number}: expected a dict of fields, got {type(row).__name__}")
    for field in (id_field, text_field):
        if field not in row:
            raise ValueError(f"row {row_number}: no {field!r} field (fields: {sorted(row)}); "
                             f"set index.id_field / index.text_field (id_field= / text_field=) to the right columns")
    if row[id_field] is None or str(row[id_field]) == "":
        raise ValueError(f"row {row_number}: the id field {id_field!r} is empty")
    text = row[text_field]
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"row {row_number}: the text field {text_field!r} is empty or not a string: {text!r}")
    clashing = sorted(set(row) & set(model_fields))
    if clashing:
        raise ValueError(f"row {row_number}: fields {clashing} are reserved for the model identity in the payload")
    return {**row, **model_fields}


def check_unique_ids(documents: Any, id_field: str) -> None:
    """Find a repeated id before anything is written, when the whole id column can be read cheaply
    (a ``datasets.Dataset`` column, or a list of dicts). Streams are checked row by row instead."""
    if type(documents).__module__.startswith("datasets.") and type(documents).__name__ == "Dataset":
        if id_field not in documents.column_names:
            raise ValueError(f"row 0: no {id_field!r} field (fields: {sorted(documents.column_names)}); "
                             "set index.id_field (id_field=) to the column holding the document ids")
        ids: Iterable[Any] = documents[id_field]
    elif isinstance(documents, Sequence) and not isinstance(documents, (str, bytes)):
        ids = (row.get(id_field) if isinstance(row, Mapping) else None for row in documents)
    else:
        return
    first_row: dict[str, int] = {}
    for row_number, doc_id in enumerate(ids):
        if doc_id is None:
            continue  # the row check names a missing id with its row
        key = str(doc_id)
        if key in first_row:
            raise ValueError(f"row {row_number}: {id_field!r} {key!r} repeats row {first_row[key]}; document ids must "
                             "be unique (nothing was written)")
        first_row[key] = row_number


def encode_vectors(model: SupportsEncode, texts: list[str], batch_size: int = 64,
                   role: Literal["query", "document"] | None = None, dim: int | None = None) -> np.ndarray:
    """``(N, D)`` float32 vectors; the model sorts the texts by length into batches of ``batch_size``.

    ``role`` picks the model's prompt (``model.prompts``): documents are indexed with the
    "document" prompt and queries searched with the "query" prompt, as in training. ``dim`` cuts
    the vectors to their first ``dim`` coordinates (see :func:`truncate_vectors`).
    """
    from textdml.evaluation.retrieval import prompt_arguments

    embeddings = model.encode(texts, batch_size=batch_size, show_progress_bar=False, convert_to="numpy",
                              **prompt_arguments(model, role))
    if hasattr(embeddings, "detach"):  # a torch tensor
        embeddings = embeddings.detach().float().cpu().numpy()
    return truncate_vectors(np.asarray(embeddings, dtype=np.float32), dim)  # (N, D)


def truncate_vectors(vectors: np.ndarray, dim: int | None) -> np.ndarray:
    """The first ``dim`` coordinates of each row, re-normalised to unit length (unchanged for None).

    Unlike ``encode(truncate_dim=...)`` (sentence-transformers' semantics: no re-normalisation),
    an index always stores unit vectors: a cut vector is shorter than 1, and a dot-product
    collection would otherwise rank documents by how much of their norm the cut kept.

    Example:
        >>> truncate_vectors(np.array([[3.0, 4.0, 12.0]]), 2).tolist()
        [[0.6, 0.8]]
    """
    if dim is None:
        return vectors
    cut = vectors[:, :dim]
    return cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)


def check_dim(dim: int | None, embedding_dim: int, what: str = "index.dim (dim=)") -> None:
    """A Matryoshka size must be 1..the model's embedding size; the error names both numbers."""
    if dim is None:
        return
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"{what} must be a whole number of coordinates >= 1, got {dim!r}")
    if dim > embedding_dim:
        raise ValueError(f"{what}={dim} is larger than the model's embedding size {embedding_dim}: vectors can only "
                         f"be cut to a size of 1..{embedding_dim}")


def unchanged_point_ids(engine: VectorEngine, collection: str, payloads: Mapping[str, dict[str, Any]]) -> set[str]:
    """Point ids already stored with exactly this payload (same fields, same model): nothing to redo."""
    stored = engine.retrieve(collection, list(payloads))
    return {record.id for record in stored if record.payload == payloads[record.id]}
