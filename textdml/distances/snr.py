from __future__ import annotations

import torch

from textdml.distances.base import BaseDistance
from textdml.registry import DISTANCES


@DISTANCES.register("snr")
class SNRDistance(BaseDistance):
    """Signal-to-noise-ratio distance of Yuan et al.: ``var(ref - query) / var(query)``; lower is closer.

    The anchor is the signal and the difference to the other row is the noise; the distance is
    the noise's variance over the signal's (both across the embedding dimensions, so it is not
    symmetric).

    Formula: ``d(x, y) = var(y - x) / var(x)``.

    Args:
        normalize_embeddings: L2-normalise inputs first (as pytorch-metric-learning does).
        eps: the floor on a query row's sum of squared deviations (a constant row has no signal;
            PML divides by zero there).

    Conventions:
        Equals pytorch-metric-learning's ``SNRDistance``. The matrix is computed from centred
        rows with one matmul (``var(y - x) = (|x_c|^2 + |y_c|^2 - 2 x_c . y_c) / (D - 1)``),
        not from an (Nq, Nr, D) tensor of differences.

    References:
        Yuan et al., "Signal-to-Noise Ratio: A Robust Distance Metric for Deep Metric Learning",
        CVPR 2019.

    Example:
        >>> import torch
        >>> SNRDistance()(torch.randn(3, 8), torch.randn(5, 8)).shape
        torch.Size([3, 5])
    """

    higher_is_closer = False

    def __init__(self, normalize_embeddings: bool = True, eps: float = 1e-12):
        super().__init__(normalize_embeddings=normalize_embeddings)
        self.eps = eps

    def compute_matrix(self, query: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        query_c = query - query.mean(dim=1, keepdim=True)  # (Nq, D)
        ref_c = ref - ref.mean(dim=1, keepdim=True)  # (Nr, D)
        query_sq = (query_c * query_c).sum(dim=1)  # (Nq,) = (D - 1) * var(query)
        ref_sq = (ref_c * ref_c).sum(dim=1)
        # Rounding can leave a tiny negative variance where ref == query: clamp it to 0.
        noise = torch.addmm(query_sq[:, None] + ref_sq[None, :], query_c, ref_c.T, alpha=-2).clamp_min(0)
        # Both variances share the 1 / (D - 1) factor: it cancels in the ratio. A constant row has
        # no signal: the floor keeps its distances finite (large) instead of a division by zero.
        return noise / query_sq.clamp_min(self.eps)[:, None]

    def compute_pairwise(self, query: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        dim = query.shape[1]
        return torch.var(ref - query, dim=1) / torch.var(query, dim=1).clamp_min(self.eps / max(dim - 1, 1))
