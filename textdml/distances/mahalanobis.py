from __future__ import annotations

import torch
from torch import nn

from textdml.distances.base import BaseDistance
from textdml.registry import DISTANCES


@DISTANCES.register("mahalanobis")
class MahalanobisDistance(BaseDistance):
    """Learnable Mahalanobis distance ``sqrt((x-y)^T M (x-y))`` with ``M = L^T L`` (always PSD).

    The matrix is parametrised by ``L`` so that any gradient step keeps ``M`` positive
    semi-definite. ``L`` starts as the identity (plain euclidean distance).

    Args:
        embedding_size: input dimension D.
        rank: rows of ``L`` (a low-rank metric when smaller than D).
        squared: return the squared distance.
        normalize_embeddings: L2-normalise inputs first.
    """

    higher_is_closer = False

    def __init__(
        self,
        embedding_size: int,
        rank: int | None = None,
        squared: bool = False,
        normalize_embeddings: bool = False,
        eps: float = 1e-12,
    ):
        super().__init__(normalize_embeddings=normalize_embeddings)
        rank = rank or embedding_size
        self.L = nn.Parameter(torch.eye(rank, embedding_size))
        self.squared = squared
        self.eps = eps

    @property
    def matrix(self) -> torch.Tensor:
        """The PSD matrix ``M = L^T L``."""
        return self.L.T @ self.L

    def compute_matrix(self, query: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        # ||L x - L y||^2 in the projected space: one projection per row, then one matmul.
        qp, rp = query @ self.L.to(query.dtype).T, ref @ self.L.to(ref.dtype).T
        sq = ((qp * qp).sum(-1, keepdim=True) - 2 * qp @ rp.T + (rp * rp).sum(-1)[None, :]).clamp_min(0)
        return sq if self.squared else (sq + self.eps).sqrt() * (sq > 0)

    def compute_pairwise(self, query: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        diff = (query - ref) @ self.L.to(query.dtype).T
        sq = (diff * diff).sum(-1)
        return sq if self.squared else (sq + self.eps).sqrt() * (sq > 0)
