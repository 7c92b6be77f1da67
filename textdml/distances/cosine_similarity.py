from __future__ import annotations

import torch

from textdml.distances.base import BaseDistance
from textdml.registry import DISTANCES


@DISTANCES.register("cosine_similarity")
class CosineSimilarityDistance(BaseDistance):
    """Cosine similarity (inputs are always L2-normalised); higher is closer."""

    higher_is_closer = True

    def __init__(self, normalize_embeddings: bool = True):
        if not normalize_embeddings:
            raise ValueError("cosine_similarity always normalises; use dot_product for raw inner products")
        super().__init__(normalize_embeddings=True)

    def compute_matrix(self, query: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return query @ ref.T

    def compute_pairwise(self, query: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return (query * ref).sum(-1)
