"""Where the sparse vectors of a hybrid collection come from (``index.sparse``).

Two sources, behind one small interface (:class:`SparseSource`):

- ``bm25``: Qdrant Edge's BM25 (``qdrant_edge.Bm25``), computed in this process for BOTH engines,
  so a Qdrant server stores exactly the vectors an Edge index does. Documents store BM25 term
  frequencies (``k``, ``b``, ``avg_len``), queries one weight per term, and the collection's sparse
  vector has the IDF modifier: the engine multiplies in each term's inverse document frequency at
  query time, from the collection's own statistics.
- a sparse model folder (``textdml.models.sparse.SparseEmbedder``, e.g. a SPLADE-style model):
  learned term weights for documents and queries, scored by plain dot product.

Each source has an identity recorded in the collection's metadata (``metadata["sparse"]``), as
the dense model's is: a version is resumed only by a run with the same sparse source, and a search
with another source is refused (another vocabulary always; other weights unless ``force``).
"""

from __future__ import annotations

import abc
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from textdml.errors import refuse_unless_forced
from textdml.index.engine import SparseModifier, SparseValues

SparseKind = Literal["document", "query"]
BM25 = "bm25"
BM25_DEFAULTS: dict[str, Any] = {"k": 1.2, "b": 0.75, "avg_len": 256.0, "language": "english"}


class SparseSource(abc.ABC):
    """Texts -> sparse vectors, with the identity a collection records."""

    #: How the engine scores the stored vectors: ``idf`` (BM25) or ``none`` (learned weights).
    modifier: SparseModifier = "none"

    @abc.abstractmethod
    def encode(self, texts: Sequence[str], kind: SparseKind, batch_size: int = 32) -> list[SparseValues]:
        """One sparse vector per text; ``kind`` picks the document or the query weighting."""

    @abc.abstractmethod
    def identity(self) -> dict[str, Any]:
        """What decides the vectors: ``kind`` (``bm25`` or ``model``), ``vocabulary`` and the settings or weights."""

    @abc.abstractmethod
    def describe(self) -> str:
        """A short name for messages."""

    @property
    def vocabulary_id(self) -> str:
        return str(self.identity()["vocabulary"])


class Bm25Source(SparseSource):
    """Qdrant Edge's BM25; the term ids are hashes of the (stemmed, lower-cased) tokens.

    Args:
        k: term-frequency saturation.
        b: length normalisation (0: none, 1: full).
        avg_len: the expected document length in tokens.
        language: stop words and stemmer (e.g. ``english``); part of the vocabulary.

    Example:
        >>> source = Bm25Source()
        >>> [len(v.indices) for v in source.encode(["the cat sat", "cats"], kind="query")]
        [2, 1]
    """

    modifier: SparseModifier = "idf"

    def __init__(self, k: float = 1.2, b: float = 0.75, avg_len: float = 256.0, language: str = "english"):
        import qdrant_edge as qe

        self.settings = {"k": float(k), "b": float(b), "avg_len": float(avg_len), "language": str(language)}
        try:
            self._bm25 = qe.Bm25(qe.Bm25Config(**self.settings))
        except ValueError as err:
            raise ValueError(f"index.bm25 {self.settings}: {err}") from err

    def encode(self, texts: Sequence[str], kind: SparseKind, batch_size: int = 32) -> list[SparseValues]:
        embed = self._bm25.embed_query if kind == "query" else self._bm25.embed_document
        return [as_sparse_values(vector.indices, vector.values) for vector in map(embed, texts)]

    def identity(self) -> dict[str, Any]:
        return {"kind": BM25, "vocabulary": f"bm25-hash:{self.settings['language']}", **self.settings}

    def describe(self) -> str:
        return "BM25 (" + ", ".join(f"{key}={value}" for key, value in self.settings.items()) + ")"


class ModelSparseSource(SparseSource):
    """A sparse embedding model (``textdml.models.sparse.SparseEmbedder``)."""

    modifier: SparseModifier = "none"

    def __init__(self, embedder: Any, source: str):
        self.embedder, self.source = embedder, source

    def encode(self, texts: Sequence[str], kind: SparseKind, batch_size: int = 32) -> list[SparseValues]:
        encoded = self.embedder.encode_sparse(list(texts), kind=kind, batch_size=batch_size, show_progress_bar=False)
        return [as_sparse_values(ids, weights) for ids, weights in encoded]

    def identity(self) -> dict[str, Any]:
        return {**dict(self.embedder.identity()), "kind": "model", "source": self.source,
                "vocabulary": str(self.embedder.vocabulary_id()), "vocab_size": int(self.embedder.vocab_size)}

    def describe(self) -> str:
        return f"sparse model {self.source}"


def as_sparse_values(indices: Any, values: Any) -> SparseValues:
    """Ids ascending (Qdrant's order) with their weights, zeros dropped."""
    ids, weights = np.asarray(indices, dtype=np.int64), np.asarray(values, dtype=np.float32)
    keep = weights != 0
    order = np.argsort(ids[keep], kind="stable")
    return SparseValues(ids[keep][order], weights[keep][order])


def dense_model_kind(folder: Path) -> str | None:
    """What dense model a folder holds (for the error that refuses it as a sparse source), or None."""
    from textdml.hub.layout import DUAL_ADAPTER_CONFIG, DUAL_ENCODER_CONFIG, MODULES, is_adapter_save

    if (folder / DUAL_ENCODER_CONFIG).exists() or (folder / DUAL_ADAPTER_CONFIG).exists():
        return "an image-text dual encoder (dense vectors)"
    if is_adapter_save(folder):
        return "a dense text model's adapter"
    if (folder / MODULES).exists():  # a sparse model in this layout was recognised before
        return "a dense text embedding model (sentence-transformers layout)"
    return None  # e.g. a plain masked LM: SparseEmbedder.load starts a sparse model from it


def sparse_models() -> Any:
    try:
        import textdml.models.sparse as sparse_module
    except ImportError as err:
        raise ValueError("index.sparse names a sparse model, but this textdml has no sparse models "
                         "(textdml.models.sparse); use index.sparse=bm25") from err
    return sparse_module


def is_sparse_folder(folder: Path) -> bool:
    """Whether a folder holds a sparse model (False where this textdml has no sparse models)."""
    from textdml.hub import layout
    from textdml.models import saving

    for module in (layout, saving):
        check = getattr(module, "is_sparse_model_folder", None)
        if check is not None:
            return bool(check(folder))
    return False


def load_sparse_source(setting: str | SparseSource | None, bm25: Mapping[str, Any] | None = None,
                       device: str | None = None) -> SparseSource | None:
    """The source ``index.sparse`` names: None, ``bm25`` (with ``index.bm25`` settings), or a sparse model.

    Raises:
        ValueError: a folder holding a dense model (the message names its kind), unknown BM25 settings.
    """
    if setting is None or isinstance(setting, SparseSource):
        return setting
    if not isinstance(setting, str) or not setting.strip():
        raise ValueError(f"index.sparse must be 'bm25' or a sparse model folder, got {setting!r}")
    if setting.lower() == BM25:
        unknown = set(bm25 or {}) - set(BM25_DEFAULTS)
        if unknown:
            raise ValueError(f"index.bm25 has unknown keys {sorted(unknown)}; known: {sorted(BM25_DEFAULTS)}")
        return Bm25Source(**{**BM25_DEFAULTS, **dict(bm25 or {})})
    if bm25:
        warnings.warn(f"index.bm25 is set, but index.sparse={setting!r} is a sparse model: index.bm25 is ignored",
                      UserWarning, stacklevel=2)
    folder = Path(os.path.expanduser(setting))
    if folder.is_dir():
        kind = None if is_sparse_folder(folder) else dense_model_kind(folder)
        if kind is not None:
            raise ValueError(f"index.sparse={setting!r} is {kind}, not a sparse model: name a sparse model folder "
                             "(SparseEmbedder) or bm25")
    embedder = sparse_models().SparseEmbedder.load(setting, device=device)
    return ModelSparseSource(embedder, setting)


def source_of_collection(stored: Mapping[str, Any], collection: str) -> SparseSource:
    """The sparse source a collection's metadata records, rebuilt to encode queries."""
    if stored.get("kind") == BM25:
        return Bm25Source(**{key: stored[key] for key in BM25_DEFAULTS if key in stored})
    source = stored.get("source") or stored.get("model_name")
    if not source:
        raise ValueError(f"collection {collection!r} records no loadable sparse source ({dict(stored)}); set "
                         "index.sparse to the sparse model that indexed it")
    return load_sparse_source(str(source))  # type: ignore[return-value]


def describe_sparse(stored: Mapping[str, Any]) -> str:
    if stored.get("kind") == BM25:
        return "BM25 (" + ", ".join(f"{key}={stored.get(key)}" for key in BM25_DEFAULTS) + ")"
    return f"sparse model {stored.get('source') or stored.get('model_name')}"


def sparse_differences(stored: Mapping[str, Any], identity: Mapping[str, Any]) -> list[str]:
    """``key 'theirs' vs 'mine'`` for each identity field that decides the vectors (not the folder it was read from)."""
    keys = sorted((set(stored) | set(identity)) - {"source"})
    return [f"{key} {stored.get(key)!r} vs {identity.get(key)!r}" for key in keys if stored.get(key) != identity.get(key)]


def check_sparse_source(stored: Mapping[str, Any] | None, source: SparseSource, name: str, force: bool,
                        verb: str) -> None:
    """Stop when ``source`` would write or query other sparse vectors than the collection holds.

    Another vocabulary is always an error (the term ids mean other words); other settings or
    weights of the same vocabulary are an error unless ``force``, as for the dense model.
    """
    if not stored:
        return
    identity = source.identity()
    if stored.get("vocabulary") != identity.get("vocabulary"):
        raise ValueError(f"collection {name!r} holds sparse vectors of vocabulary {stored.get('vocabulary')!r} "
                         f"({describe_sparse(stored)}), but the sparse source given to {verb} has vocabulary "
                         f"{identity.get('vocabulary')!r} ({source.describe()}): its term ids mean other words. "
                         "Use the sparse source that indexed it (or drop index.sparse: search reads it from the collection)")
    differences = sparse_differences(stored, identity)
    if not differences:
        return
    message = (f"collection {name!r} was indexed with {describe_sparse(stored)}, but the sparse source given to {verb} "
               f"is {source.describe()} ({'; '.join(differences)})")
    refuse_unless_forced(message, "the sparse source that indexed it", force)
