from __future__ import annotations

import torch

from textdml.distances.base import BaseDistance
from textdml.registry import DISTANCES


@DISTANCES.register("dot_product")
class DotProductDistance(BaseDistance):
    """Inner product (optionally of normalised inputs, then equal to cosine); higher is closer."""

    higher_is_closer = True

    def compute_matrix(self, query: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return query @ ref.T

    def compute_pairwise(self, query: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return (query * ref).sum(-1)
