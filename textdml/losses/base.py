"""The loss contract shared by the whole catalogue.

``forward(embeddings, labels=None, *, ref_embeddings=None, ref_labels=None, indices=None)``

- ``embeddings`` (N, D): the anchor side.
- ``labels`` (N,): rows with equal labels are positives of each other. Pairs become labels:
  anchor i and positive i share label i, hard negatives get fresh labels.
- ``ref_embeddings`` / ``ref_labels`` (M, D) / (M,): a second set to compare against (positives
  and negatives of a pair dataset, the other tower of CLIP, a memory bank, rows gathered from other
  devices). Without it, ``embeddings`` is compared with itself and a row is never its own positive.
- With ``labels=None`` and ``ref_embeddings`` given, rows pair up by position: anchor i with
  ref i, and ref rows past N are negatives.
- ``indices``: tuples from a miner (or the explicit tuples of a triplet dataset).
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from textdml.distances import BaseDistance
from textdml.indices import TupleIndices
from textdml.losses.needs import DeclaresNeeds, LossNeeds
from textdml.losses.needs import InputKind as InputKind  # the old import path
from textdml.miners.base import resolve_ref, upcast

Reduction = Literal["mean", "sum", "mean_nonzero", "none"]


class DegenerateBatchWarning(UserWarning):
    """The batch holds nothing the loss can learn from (no positive pair, one class, ...)."""


class BaseLoss(DeclaresNeeds, nn.Module):
    """Base class: input checks, label resolution, float32 maths and reduction."""

    #: What the loss needs from the data, the task and the devices (see ``LossNeeds``).
    needs: ClassVar[LossNeeds] = LossNeeds()
    #: BibTeX for the model card.
    citation: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Every loss takes embedding_regularizer= / weight_regularizer= (as PML's mixins), without
        # each __init__ listing them.
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            from textdml.regularizers.attach import with_regularizer_arguments

            cls.__init__ = with_regularizer_arguments(cls.__dict__["__init__"])  # type: ignore[method-assign]

    def one_way(self) -> BaseLoss:
        """A shallow copy (same parameters) computing only anchors -> refs, for a ``symmetric`` loss.

        Across devices the two directions of a symmetric loss run as two gathered calls of it.
        """
        one_way = copy.copy(self)
        one_way.needs = dataclasses.replace(self.needs, symmetric=False)
        return one_way

    def class_weights(self) -> torch.Tensor | None:
        """The class vectors a weight regularizer acts on, (rows, D): ``weight`` when the loss has one."""
        weight = getattr(self, "weight", None)
        return weight if isinstance(weight, nn.Parameter) and weight.ndim == 2 else None

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        ref_embeddings: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
        indices: TupleIndices | None = None,
    ) -> torch.Tensor:
        self.check_shapes(embeddings, ref_embeddings)
        if indices is not None and not self.needs.accepts_indices:
            raise ValueError(f"{type(self).__name__} does not take mined tuples; remove the miner")
        labels, ref_labels = self.resolve_labels(embeddings, labels, ref_embeddings, ref_labels)
        # Half-precision inputs are computed in float32: softmaxes and margins in bfloat16 lose
        # the small differences the gradient lives on. float64 stays float64 (gradcheck).
        embeddings = upcast(embeddings)
        ref, ref_labels, same_set = resolve_ref(
            embeddings, labels, None if ref_embeddings is None else upcast(ref_embeddings), ref_labels
        )
        return self.compute_loss(embeddings, labels, ref, ref_labels, same_set, indices)

    def check_shapes(self, embeddings: torch.Tensor, ref_embeddings: torch.Tensor | None) -> None:
        """(N, D) embeddings, and ref rows of the same D: the errors every loss gives alike."""
        if embeddings.ndim != 2:
            raise ValueError(f"{type(self).__name__}: embeddings must be (N, D), got shape {tuple(embeddings.shape)}")
        if ref_embeddings is not None and ref_embeddings.shape[-1] != embeddings.shape[-1]:
            raise ValueError(
                f"{type(self).__name__}: embeddings have dim {embeddings.shape[-1]} "
                f"but ref_embeddings have dim {ref_embeddings.shape[-1]}"
            )

    def resolve_labels(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None,
        ref_embeddings: torch.Tensor | None,
        ref_labels: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        device = embeddings.device
        if labels is None:
            if ref_embeddings is None:
                raise ValueError(
                    f"{type(self).__name__} needs labels, or ref_embeddings to pair rows by position"
                )
            if ref_labels is not None:
                raise ValueError("ref_labels were given without labels")
            if len(ref_embeddings) < len(embeddings):
                raise ValueError(
                    f"pairing by position needs at least as many ref rows ({len(ref_embeddings)}) "
                    f"as embeddings ({len(embeddings)})"
                )
            return torch.arange(len(embeddings), device=device), torch.arange(len(ref_embeddings), device=device)
        if len(labels) != len(embeddings):
            raise ValueError(f"{len(embeddings)} embeddings but {len(labels)} labels")
        return labels.to(device), None if ref_labels is None else ref_labels.to(device)

    def compute_loss(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
        indices: TupleIndices | None,
    ) -> torch.Tensor:
        """The loss on float32 inputs; ``ref_embeddings is embeddings`` when ``same_set``."""
        raise NotImplementedError

    def parameter_groups(self, lr: float) -> list[dict]:
        """Optimiser groups for a loss's own parameters (proxies, centres, class weights).

        ``lr`` is the loss learning rate from the config; a loss whose parameters need different
        rates (e.g. centre loss: classifier vs centres) overrides this.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr}] if params else []

    def empty_loss(self, embeddings: torch.Tensor, reason: str) -> torch.Tensor:
        """A zero that keeps the graph (so backward and DDP work) for a batch with nothing to learn."""
        warnings.warn(f"{type(self).__name__}: {reason}; the loss is 0 for this batch", DegenerateBatchWarning, stacklevel=3)
        return embeddings.sum() * 0.0


def reduce_losses(losses: torch.Tensor, reduction: Reduction, anchor: torch.Tensor | None = None) -> torch.Tensor:
    """Reduce per-tuple losses: ``mean``, ``sum``, ``mean_nonzero`` (mean of the losses > 0, as
    pytorch-metric-learning's AvgNonZeroReducer) or ``none``.

    ``anchor`` is only needed to keep the graph when there is nothing to reduce.
    """
    if reduction == "none":
        return losses
    if losses.numel() == 0:
        return (anchor.sum() * 0.0) if anchor is not None else losses.sum()
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean_nonzero":
        nonzero = losses > 0
        count = nonzero.sum()
        return losses.sum() / count.clamp_min(1)
    raise ValueError(f"unknown reduction {reduction!r}: use 'mean', 'sum', 'mean_nonzero' or 'none'")


def closeness_to_distance(distance: BaseDistance, value: torch.Tensor) -> torch.Tensor:
    """Turn a distance-matrix entry into 'larger means farther' whatever the distance kind."""
    return -value if distance.higher_is_closer else value
