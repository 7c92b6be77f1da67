"""pytorch-metric-learning miners under the textdml miner contract.

A PML miner returns a bare tuple, (a, p, n) or (a1, p, a2, n); textdml miners return named
dataclasses. :class:`PMLMinerAdapter` converts, so ``miner: {target:
pytorch_metric_learning.miners.MultiSimilarityMiner}`` works with any textdml or PML loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from textdml.indices import PairIndices, TripletIndices, TupleIndices


def from_pml_tuple(mined: tuple[torch.Tensor, ...]) -> TupleIndices:
    """PML's tuple -> :class:`TripletIndices` (3 tensors) or :class:`PairIndices` (4 tensors)."""
    if len(mined) == 3:
        return TripletIndices(*mined)
    if len(mined) == 4:
        return PairIndices(*mined)
    raise ValueError(f"a pytorch-metric-learning miner returned {len(mined)} tensors; expected 3 or 4")


class PMLMinerAdapter(nn.Module):
    """Any pytorch-metric-learning miner, returning textdml tuples.

    Args:
        miner: a pytorch-metric-learning miner instance.

    Example:
        >>> import torch
        >>> from pytorch_metric_learning.miners import MultiSimilarityMiner
        >>> mined = PMLMinerAdapter(MultiSimilarityMiner())(torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2]))
        >>> type(mined).__name__
        'PairIndices'
    """

    def __init__(self, miner: nn.Module):
        super().__init__()
        from textdml.losses.pml_adapter import is_pml_object

        if not is_pml_object(miner, "miners"):
            raise TypeError(f"PMLMinerAdapter wraps pytorch-metric-learning miners, got {type(miner).__name__}")
        self.miner = miner

    @torch.no_grad()
    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
    ) -> TupleIndices:
        return from_pml_tuple(self.miner(embeddings, labels, ref_embeddings, ref_labels))

    def extra_repr(self) -> str:
        return f"pytorch_metric_learning.{type(self.miner).__name__}"


def adapt_miner(miner: Any) -> Any:
    """A PML miner wrapped in :class:`PMLMinerAdapter`; anything else (or None) as it is."""
    from textdml.losses.pml_adapter import is_pml_object

    return PMLMinerAdapter(miner) if miner is not None and is_pml_object(miner, "miners") else miner
