"""Model identity: which exact model wrote a vector, so a collection is never searched with another.

The identity of an encoder is its source name (the path or Hub id it was loaded from), a SHA-256 of
its weights, its embedding dimension, its similarity, whether it normalises and its prompts; the
identity of the vectors in a collection adds the Matryoshka size they were cut to (``index.dim``). The
hash is computed once (at save, stored in ``textdml_config.json``) and reused while the weights are
untouched: :class:`WeightsHashCache` notices any in-place change through the tensors' version
counters, so a model changed by training is hashed again instead of reporting a stale identity.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name and raw bytes, in name order (any dtype, any device)."""
    import torch

    digest = hashlib.sha256()
    for key, tensor in sorted(state_dict.items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def state_fingerprint(state_dict: Mapping[str, torch.Tensor]) -> tuple:
    """Cheap stand-in for the bytes: storage address, version counter (bumped by every in-place
    write, optimiser steps included), dtype and shape of each tensor."""
    return tuple((key, t.data_ptr(), t._version, t.dtype, tuple(t.shape)) for key, t in sorted(state_dict.items()))


class WeightsHashCache:
    """The weights hash of a module, recomputed only when a tensor changed since the last hash."""

    def __init__(self) -> None:
        self._fingerprint: tuple | None = None
        self._sha256: str | None = None

    def get(self, state_dict: Mapping[str, torch.Tensor]) -> str:
        fingerprint = state_fingerprint(state_dict)
        if self._sha256 is None or fingerprint != self._fingerprint:
            self._sha256 = state_dict_sha256(state_dict)
            self._fingerprint = fingerprint
        return self._sha256

    def trust(self, state_dict: Mapping[str, torch.Tensor], sha256: str) -> None:
        """Take a hash stored at save as the hash of these (just loaded, unchanged) tensors."""
        self._fingerprint = state_fingerprint(state_dict)
        self._sha256 = sha256


@dataclass(frozen=True)
class ModelIdentity:
    """Everything that decides which vectors a model writes; two models agree when all fields do.

    ``truncate_dim`` is set for vectors cut to their first ``truncate_dim`` coordinates and
    re-normalised (``index.dim``): the same model at another size writes other vectors.

    Example:
        >>> a = ModelIdentity("org/model", "ab" * 32, 384, "cosine", True)
        >>> a.short_id
        'abababab'
        >>> a.differences(ModelIdentity("org/other", "ab" * 32, 384, "cosine", True))
        ["model_name 'org/model' vs 'org/other'"]
    """

    model_name: str
    weights_sha256: str
    embedding_dim: int
    similarity: str
    normalize: bool | None = None
    prompts: dict[str, str] = field(default_factory=dict)
    truncate_dim: int | None = None
    # Where a fine-tuned model was loaded from (its folder, or its Hub id once pushed) when
    # ``model_name`` names the base it was trained from; informative only, never compared.
    source: str | None = None

    @property
    def vector_size(self) -> int:
        """The size of the vectors as stored: ``truncate_dim`` when cut, else the model's size."""
        return self.truncate_dim if self.truncate_dim is not None else self.embedding_dim

    @property
    def short_id(self) -> str:
        """The first 8 hex digits of the weights hash (collection version names carry it)."""
        return self.weights_sha256[:8]

    def to_dict(self, with_source: bool = True) -> dict[str, Any]:
        """The fields; ``source`` only when set and asked for (fingerprints leave it out: a moved folder
        holds the same model)."""
        data = asdict(self)
        if data["source"] is None or not with_source:
            del data["source"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelIdentity:
        return cls(model_name=str(data.get("model_name")), weights_sha256=str(data.get("weights_sha256")),
                   embedding_dim=int(data.get("embedding_dim", 0)), similarity=str(data.get("similarity")),
                   normalize=data.get("normalize"), prompts=dict(data.get("prompts") or {}),
                   # Collections indexed before index.dim existed hold full-size vectors.
                   truncate_dim=None if data.get("truncate_dim") is None else int(data["truncate_dim"]),
                   source=None if data.get("source") is None else str(data["source"]))

    def differences(self, other: ModelIdentity) -> list[str]:
        """``field 'mine' vs 'theirs'`` for each field that differs (the weights hash counts, the
        source name is informative only when the weights also agree: a moved folder is the same model)."""
        mine, theirs = self.to_dict(with_source=False), other.to_dict(with_source=False)
        return [f"{key} {mine[key]!r} vs {theirs[key]!r}" for key in mine if mine[key] != theirs[key]]

    def same_vectors(self, other: ModelIdentity) -> bool:
        """Whether both write the same vectors: same weights, size, truncation, similarity,
        normalisation, prompts."""
        return [d for d in self.differences(other) if not d.startswith("model_name ")] == []

    def same_model(self, other: ModelIdentity) -> bool:
        """Whether both are the same model, perhaps with vectors cut to another ``truncate_dim``."""
        return self.same_vectors(replace(other, truncate_dim=self.truncate_dim))

    def describe(self) -> str:
        """``runs/x/final (fine-tuned from org/base; sha256 1a2b3c4d, 384-d, cosine)``, or ``org/model (sha256 ...)``.

        Example:
            >>> ModelIdentity("org/base", "ab" * 32, 8, "cosine", source="runs/x/final").describe()
            'runs/x/final (fine-tuned from org/base; sha256 abababab, 8-d, cosine)'
        """
        size = f"{self.embedding_dim}-d" + (f" cut to {self.truncate_dim}" if self.truncate_dim is not None else "")
        details = f"sha256 {self.short_id}, {size}, {self.similarity}"
        if self.source and self.source != self.model_name:
            return f"{self.source} (fine-tuned from {self.model_name}; {details})"
        return f"{self.model_name} ({details})"

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def model_identity(model: Any, truncate_dim: int | None = None) -> ModelIdentity:
    """The :class:`ModelIdentity` of any encoder following ``SupportsEncode`` (``identity()`` gives
    the name and weights hash; the rest are the model's attributes), with its vectors cut to
    ``truncate_dim`` when given, else to the model's own ``truncate_dim`` (what its ``encode`` returns)."""
    base = model.identity()
    if truncate_dim is None:
        truncate_dim = getattr(model, "truncate_dim", None)
    return ModelIdentity(
        model_name=str(base["model_name"]),
        weights_sha256=str(base["weights_sha256"]),
        embedding_dim=int(model.embedding_dim),
        similarity=str(model.similarity),
        normalize=getattr(model, "normalize", None),
        prompts=dict(getattr(model, "prompts", None) or {}),
        truncate_dim=truncate_dim,
        source=getattr(model, "source", None),
    )
