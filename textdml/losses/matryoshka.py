from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from textdml.indices import TupleIndices
from textdml.losses.base import BaseLoss
from textdml.registry import LOSSES


def shrink(embeddings: torch.Tensor, dim: int) -> torch.Tensor:
    """The first ``dim`` coordinates, re-normalised: what a truncated Matryoshka vector is."""
    return F.normalize(embeddings[..., :dim], p=2, dim=-1)


@LOSSES.register("matryoshka")
class MatryoshkaLoss(BaseLoss):
    """Matryoshka representation learning: any loss of the catalogue at several embedding sizes.

    The wrapped loss is computed on the full embeddings and on their first ``d`` coordinates
    (re-normalised) for each ``d`` of ``dimensions``, and the values are summed with ``weights``.
    The model learns to put the most information first, so its vectors can be cut to a fraction
    of their size (``Embedder.encode(truncate_dim=...)``, ``index.dim``) for cheaper storage and
    search at a small loss of quality.

    Formula: ``L = sum_d w_d * loss(normalize(x[:, :d]), labels, ref=normalize(ref[:, :d]))``.

    Args:
        loss: the loss to wrap: an object, or a config dict (``{"name": "info_nce"}``).
        dimensions: the sizes to train, e.g. ``[384, 256, 128, 64]`` (sorted largest first);
            include the full size so the untruncated vectors are trained too.
        weights: one weight per dimension (default 1 each), in the order given.
        embedding_size: the model's dimension (filled in by the trainer): a dimension above it is
            an error here rather than a silent no-op.

    Inputs:
        Whatever the wrapped loss takes: pairs, triplets, labelled rows, mined ``indices`` (mined
        once, on the full vectors, by the task).

    Conventions:
        As sentence-transformers' ``MatryoshkaLoss`` (truncate, then L2-normalise, sum of the
        weighted losses; tested for equality on the same embeddings). ``n_dims_per_step`` is not
        offered: every step trains every size.

    References:
        Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022.

    Example:
        >>> import torch
        >>> from textdml.losses.info_nce import InfoNCELoss
        >>> loss = MatryoshkaLoss(InfoNCELoss(), dimensions=[8, 4, 2])
        >>> anchors, positives = torch.randn(4, 8), torch.randn(4, 8)
        >>> loss(anchors, ref_embeddings=positives).shape
        torch.Size([])
    """

    citation = """@inproceedings{kusupati2022matryoshka,
  title={Matryoshka Representation Learning},
  author={Kusupati, Aditya and Bhatt, Gantavya and Rege, Aniket and Wallingford, Matthew and Sinha, Aditya and Ramanujan, Vivek and Howard-Snyder, William and Chen, Kaifeng and Kakade, Sham and Jain, Prateek and Farhadi, Ali},
  booktitle={Advances in Neural Information Processing Systems},
  year={2022}
}"""

    def __init__(
        self,
        loss: BaseLoss | dict[str, Any],
        dimensions: Sequence[int],
        weights: Sequence[float] | None = None,
        embedding_size: int | None = None,
    ):
        super().__init__()
        inner = LOSSES.build(**loss) if isinstance(loss, dict) else loss
        if not isinstance(inner, BaseLoss):
            raise TypeError(f"MatryoshkaLoss wraps a textdml loss, got {type(inner).__name__}")
        dims = [int(d) for d in dimensions]
        if not dims or any(d <= 0 for d in dims):
            raise ValueError(f"MatryoshkaLoss dimensions must be positive integers, got {list(dimensions)}")
        if embedding_size is not None and max(dims) > embedding_size:
            raise ValueError(f"MatryoshkaLoss dimension {max(dims)} exceeds the model's embedding size "
                             f"{embedding_size}; use dimensions <= {embedding_size}")
        weights = [1.0] * len(dims) if weights is None else [float(w) for w in weights]
        if len(weights) != len(dims):
            raise ValueError(f"MatryoshkaLoss: {len(dims)} dimensions but {len(weights)} weights")
        order = sorted(range(len(dims)), key=lambda i: -dims[i])
        self.loss = inner
        self.dimensions = [dims[i] for i in order]
        self.weights = [weights[i] for i in order]
        # What the wrapper trains on, takes, gathers and averages is what the wrapped loss does.
        self.needs = dataclasses.replace(self.needs, input_kinds=inner.needs.input_kinds,
                                         accepts_indices=inner.needs.accepts_indices, gathers=inner.needs.gathers,
                                         symmetric=inner.needs.symmetric)
        if inner.citation:
            self.citation = f"{MatryoshkaLoss.citation}\n\n{inner.citation}"

    @property
    def symmetric(self) -> bool:  # type: ignore[override]
        return self.needs.symmetric

    @symmetric.setter
    def symmetric(self, value: bool) -> None:
        # Across devices, compute_local_loss runs a symmetric loss as two one-way calls on a
        # shallow copy: give the copy its own one-way inner loss, leaving the original's alone.
        if value != self.symmetric:
            if value:
                inner = copy.copy(self.loss)
                inner.needs = dataclasses.replace(inner.needs, symmetric=True)
            else:
                inner = self.loss.one_way()  # a nested wrapper makes its own inner loss one-way too
            self._modules = {**self._modules, "loss": inner}  # a shallow copy shares the dict
            self.needs = dataclasses.replace(self.needs, symmetric=value)

    def one_way(self) -> MatryoshkaLoss:
        """A shallow copy whose wrapped loss is a one-way copy (the original stays symmetric)."""
        one_way = copy.copy(self)
        one_way.symmetric = False
        return one_way

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        ref_embeddings: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
        indices: TupleIndices | None = None,
    ) -> torch.Tensor:
        if embeddings.ndim != 2:
            raise ValueError(f"MatryoshkaLoss: embeddings must be (N, D), got shape {tuple(embeddings.shape)}")
        if ref_embeddings is not None and ref_embeddings.shape[-1] != embeddings.shape[-1]:
            raise ValueError(f"MatryoshkaLoss: embeddings have dim {embeddings.shape[-1]} "
                             f"but ref_embeddings have dim {ref_embeddings.shape[-1]}")
        if max(self.dimensions) > embeddings.shape[-1]:
            raise ValueError(f"MatryoshkaLoss dimension {max(self.dimensions)} exceeds the embedding size "
                             f"{embeddings.shape[-1]}")
        total = embeddings.new_zeros((), dtype=torch.float32)
        for dim, weight in zip(self.dimensions, self.weights, strict=True):
            ref = None if ref_embeddings is None else shrink(ref_embeddings, dim)
            total = total + weight * self.loss(shrink(embeddings, dim), labels, ref_embeddings=ref,
                                               ref_labels=ref_labels, indices=indices)
        return total

    def parameter_groups(self, lr: float) -> list[dict]:
        return self.loss.parameter_groups(lr)
