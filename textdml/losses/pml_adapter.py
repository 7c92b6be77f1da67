"""pytorch-metric-learning losses under the textdml loss contract, as they are.

A PML loss takes ``(embeddings, labels, indices_tuple, ref_emb, ref_labels)``; the textdml
contract names them ``ref_embeddings`` and ``indices`` (a miner's dataclass, not a bare tuple).
:class:`PMLLossAdapter` maps one onto the other, so ``loss: {target:
pytorch_metric_learning.losses.MultiSimilarityLoss}`` trains through the same task, gather and
GradCache paths as a textdml loss. pytorch-metric-learning is not a dependency of textdml: it is
imported only when one of its objects is adapted.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from textdml.indices import PairIndices, TripletIndices, TupleIndices
from textdml.losses.needs import DeclaresNeeds, LossNeeds

PML_PACKAGE = "pytorch_metric_learning"


def is_pml_object(obj: Any, kind: str) -> bool:
    """Whether ``obj`` is a pytorch-metric-learning ``kind`` ("losses" or "miners") instance."""
    if not type(obj).__module__.startswith(f"{PML_PACKAGE}."):
        return False
    if kind == "losses":
        from pytorch_metric_learning.losses import BaseMetricLossFunction
        from pytorch_metric_learning.losses.cross_batch_memory import CrossBatchMemory

        return isinstance(obj, (BaseMetricLossFunction, CrossBatchMemory))
    from pytorch_metric_learning.miners import BaseMiner

    return isinstance(obj, BaseMiner)


def to_pml_tuple(indices: TupleIndices | None) -> tuple[torch.Tensor, ...] | None:
    """textdml tuples -> PML's ``indices_tuple``: (a, p, n) for triplets, (a1, p, a2, n) for pairs."""
    if indices is None:
        return None
    if isinstance(indices, TripletIndices):
        return indices.anchor, indices.positive, indices.negative
    if isinstance(indices, PairIndices):
        return indices.anchor_pos, indices.positive, indices.anchor_neg, indices.negative
    raise TypeError(f"indices must be PairIndices or TripletIndices, got {type(indices).__name__}")


class PMLLossAdapter(DeclaresNeeds, nn.Module):
    """Any pytorch-metric-learning loss, called with the textdml loss contract.

    ``ref_embeddings`` -> ``ref_emb``, ``indices`` -> ``indices_tuple``; with ``labels=None`` rows
    pair by position (anchor i with ref i) as the contract says. A PML loss with its own parameters
    (ArcFace, proxies, SoftTriple) is class-level: it trains on labelled rows and is not gathered
    across devices (its parameters see every device through DDP).

    Args:
        loss: a pytorch-metric-learning loss instance.

    Example:
        >>> import torch
        >>> from pytorch_metric_learning.losses import MultiSimilarityLoss
        >>> loss = PMLLossAdapter(MultiSimilarityLoss())
        >>> value = loss(torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
        >>> value.ndim
        0
    """

    needs: ClassVar[LossNeeds] = LossNeeds(accepts_indices=True)

    def __init__(self, loss: nn.Module):
        super().__init__()
        if not is_pml_object(loss, "losses"):
            raise TypeError(f"PMLLossAdapter wraps pytorch-metric-learning losses, got {type(loss).__name__}")
        self.loss = loss
        class_level = any(True for _ in loss.parameters())
        self.needs = dataclasses.replace(self.needs, gathers=not class_level,
                                         input_kinds=("labelled",) if class_level else ("pairs", "triplets", "labelled"))

    @property
    def citation(self) -> str | None:
        return getattr(self.loss, "citation", None)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        ref_embeddings: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
        indices: TupleIndices | None = None,
    ) -> torch.Tensor:
        if labels is None:
            if ref_embeddings is None:
                raise ValueError(f"{self.name}: needs labels, or ref_embeddings to pair rows by position")
            labels = torch.arange(len(embeddings), device=embeddings.device)
            ref_labels = torch.arange(len(ref_embeddings), device=embeddings.device)
        kwargs: dict[str, Any] = {"indices_tuple": to_pml_tuple(indices)}
        if ref_embeddings is not None:
            kwargs.update(ref_emb=ref_embeddings, ref_labels=ref_labels)
        return self.loss(embeddings, labels, **kwargs)

    @property
    def name(self) -> str:
        return type(self.loss).__name__

    def parameter_groups(self, lr: float) -> list[dict]:
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr}] if params else []

    def extra_repr(self) -> str:
        return f"pytorch_metric_learning.{type(self.loss).__name__}"


def adapt_loss(loss: Any) -> Any:
    """A PML loss wrapped in :class:`PMLLossAdapter`; anything else as it is."""
    return PMLLossAdapter(loss) if is_pml_object(loss, "losses") else loss
