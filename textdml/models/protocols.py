"""The small interfaces that evaluation and indexing code rely on, instead of a concrete model class.

Anything with these attributes works: textdml's ``Embedder``, a thin wrapper around a
sentence-transformers model, or a fake encoder in a test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import torch


@runtime_checkable
class SupportsEncode(Protocol):
    """A text encoder: texts in, one embedding per text out.

    Attributes:
        similarity: the similarity the model was trained with. ``"cosine"`` compares directions
            (embeddings are normalised before scoring), ``"dot"`` compares raw inner products.
        embedding_dim: the size of each embedding.
    """

    similarity: Literal["cosine", "dot"]
    embedding_dim: int

    def encode(
        self,
        texts: list[str],
        batch_size: int = 32,
        normalize: bool | None = None,
        show_progress_bar: bool | None = None,
        convert_to: Literal["numpy", "torch"] = "numpy",
    ) -> np.ndarray | torch.Tensor:
        """Embed ``texts`` into a ``(len(texts), embedding_dim)`` array or tensor."""
        ...

    def identity(self) -> dict[str, str]:
        """``{"model_name": ..., "weights_sha256": ...}``: which weights produced the embeddings."""
        ...
