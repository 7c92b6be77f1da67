from __future__ import annotations

import torch

from textdml.distances.base import BaseDistance, upcast
from textdml.registry import DISTANCES


@DISTANCES.register("lp")
class LpDistance(BaseDistance):
    """Minkowski distance ``||x - y||_p`` (euclidean for p=2); lower is closer.

    Args:
        p: the norm order.
        squared: return ``||x - y||_p ** 2`` (cheaper, and what some losses are defined on).
        normalize_embeddings: L2-normalise inputs first (as pytorch-metric-learning does by default).
        eps: added under the square root so that the gradient at zero distance is finite.
    """

    higher_is_closer = False

    def __init__(self, p: float = 2.0, squared: bool = False, normalize_embeddings: bool = True, eps: float = 1e-12):
        super().__init__(normalize_embeddings=normalize_embeddings)
        self.p = p
        self.squared = squared
        self.eps = eps

    def compute_matrix(self, query: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        if self.p == 2 and self.squared:
            # Expanded form: one matmul, no square root.
            sq = (query * query).sum(-1, keepdim=True) - 2 * query @ ref.T + (ref * ref).sum(-1)[None, :]
            return sq.clamp_min(0)
        # cdist's backward is fused (and gives 0, not NaN, at zero distance).
        dist = torch.cdist(upcast(query), upcast(ref), p=self.p).to(query.dtype)
        return dist**2 if self.squared else dist

    def compute_pairwise(self, query: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        diff = query - ref
        if self.p == 2:
            sq = (diff * diff).sum(-1)
            return sq if self.squared else (sq + self.eps).sqrt() * (sq > 0)
        dist = diff.abs().pow(self.p).sum(-1).pow(1 / self.p)
        return dist**2 if self.squared else dist

    def extra_repr(self) -> str:
        return f"p={self.p}, squared={self.squared}, " + super().extra_repr()
