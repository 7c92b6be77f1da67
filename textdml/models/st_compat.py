"""The surface sentence-transformers' evaluators use, so they run on a textdml ``Embedder`` as they are.

``InformationRetrievalEvaluator``, ``EmbeddingSimilarityEvaluator``, ``TripletEvaluator`` and the
NanoBEIR evaluators call ``model.similarity_fn_name``, ``model.similarity(a, b)``,
``model.encode(..., convert_to_tensor=True)`` / ``encode_query`` / ``encode_document`` and record
their results in ``model.model_card_data``. :class:`SentenceTransformerCompat` gives an embedder
exactly that, on top of its own ``encode`` (plus ``push_to_hub``); sentence-transformers itself is
not imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

SIMILARITY_NAMES = ("cosine", "dot")


class SimilarityName(str):
    """``"cosine"`` or ``"dot"``, also callable as sentence-transformers' ``model.similarity(a, b)``.

    textdml code compares ``model.similarity == "cosine"``; sentence-transformers' evaluators call
    ``model.similarity(queries, documents)`` for an ``(N, M)`` score matrix. One value serves both.

    Example:
        >>> import torch
        >>> similarity = SimilarityName("dot")
        >>> similarity == "dot", similarity(torch.ones(2, 3), torch.ones(4, 3)).shape
        (True, torch.Size([2, 4]))
    """

    def __new__(cls, name: str) -> SimilarityName:
        if name not in SIMILARITY_NAMES:
            raise ValueError(f"similarity must be 'cosine' or 'dot', got {name!r}")
        return super().__new__(cls, name)

    def __call__(self, a: Any, b: Any) -> torch.Tensor:
        a, b = as_matrix(a), as_matrix(b)
        if self == "cosine":
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        return a @ b.T  # (N, M)

    def pairwise(self, a: Any, b: Any) -> torch.Tensor:
        """Row i of ``a`` against row i of ``b``: ``(N,)``."""
        a, b = as_matrix(a), as_matrix(b)
        if self == "cosine":
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        return (a * b).sum(dim=-1)


def as_matrix(x: Any) -> torch.Tensor:
    x = torch.as_tensor(x).float()
    return x.unsqueeze(0) if x.ndim == 1 else x


@dataclass
class ModelCardData:
    """Where sentence-transformers evaluators store their results (``set_evaluation_metrics``)."""

    eval_results: list[dict[str, Any]] = field(default_factory=list)

    def set_evaluation_metrics(self, evaluator: Any, metrics: dict[str, Any], epoch: int = 0, step: int = 0) -> None:
        self.eval_results.append({"evaluator": type(evaluator).__name__, "epoch": epoch, "step": step, **metrics})


@dataclass
class EncodeOptions:
    convert_to: str | None = None
    normalize: bool | None = None


def resolve_st_options(options: dict[str, Any]) -> EncodeOptions:
    """sentence-transformers ``encode`` keyword arguments -> what textdml's ``encode`` does with them.

    ``convert_to_tensor`` / ``convert_to_numpy`` pick the output type, ``normalize_embeddings=True``
    normalises (False keeps the model's own setting); ``prompt``, ``prompt_name`` and
    ``truncate_dim`` are ``Embedder.encode``'s own arguments. Options textdml cannot honour are
    errors, never silently ignored.
    """
    options = dict(options)
    result = EncodeOptions()
    if options.pop("convert_to_tensor", False):
        result.convert_to = "torch"
    elif options.pop("convert_to_numpy", None) is not None and result.convert_to is None:
        result.convert_to = "numpy"
    options.pop("convert_to_numpy", None)
    if options.pop("normalize_embeddings", False):
        result.normalize = True
    precision = options.pop("precision", None)
    if precision not in (None, "float32"):
        raise ValueError(f"encode(precision={precision!r}): textdml encodes float32 only; quantise the output yourself")
    output_value = options.pop("output_value", "sentence_embedding")
    if output_value != "sentence_embedding":
        raise ValueError(f"encode(output_value={output_value!r}): only 'sentence_embedding' is supported")
    for ignorable in ("device", "pool", "chunk_size"):
        if options.get(ignorable) is not None:
            raise ValueError(f"encode({ignorable}=...): not supported; move the model with .to(device) instead")
        options.pop(ignorable, None)
    if options:
        raise TypeError(f"encode() got unexpected keyword arguments {sorted(options)}")
    return result


class SentenceTransformerCompat:
    """Mixin for text embedders: the model surface sentence-transformers' evaluators call.

    The class using it has ``encode(texts, batch_size, normalize, show_progress_bar, convert_to,
    **st_options)`` and a ``similarity`` name.
    """

    _similarity: SimilarityName

    @property
    def similarity(self) -> SimilarityName:
        """The training / search similarity: a string (``"cosine"`` / ``"dot"``) that is also callable."""
        return self._similarity

    @similarity.setter
    def similarity(self, name: str) -> None:
        self._similarity = SimilarityName(name)

    @property
    def similarity_fn_name(self) -> str:
        """sentence-transformers' name of the similarity (``"cosine"`` or ``"dot"``)."""
        return str(self._similarity)

    def similarity_pairwise(self, a: Any, b: Any) -> torch.Tensor:
        return self._similarity.pairwise(a, b)

    @property
    def model_card_data(self) -> ModelCardData:
        if "_model_card_data" not in self.__dict__:
            self.__dict__["_model_card_data"] = ModelCardData()
        return self.__dict__["_model_card_data"]

    def encode_query(self, texts: Any, **kwargs: Any) -> Any:
        """``encode`` with the model's "query" prompt (none when it has no prompts), as sentence-transformers."""
        kwargs.setdefault("prompt", (getattr(self, "prompts", None) or {}).get("query", ""))
        return self.encode(texts, **kwargs)  # type: ignore[attr-defined]

    def encode_document(self, texts: Any, **kwargs: Any) -> Any:
        """``encode`` with the model's "document" prompt (none when it has no prompts)."""
        kwargs.setdefault("prompt", (getattr(self, "prompts", None) or {}).get("document", ""))
        return self.encode(texts, **kwargs)  # type: ignore[attr-defined]

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """Save and upload to the Hugging Face Hub, as sentence-transformers' ``push_to_hub``
        (see :func:`textdml.models.saving.push_model` for the arguments); returns the ``PushResult``."""
        from textdml.models.saving import push_model

        return push_model(self, repo_id, **kwargs)
