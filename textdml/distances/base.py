"""The distance contract: ``(query, ref=None) -> (Nq, Nr)`` matrix plus ``higher_is_closer``.

Every loss is written once against this interface, so a loss that is usually defined on cosine
similarity also runs on euclidean distance and back, without a second implementation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def upcast(x: torch.Tensor) -> torch.Tensor:
    """float16 / bfloat16 -> float32; float32 and float64 unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class BaseDistance(nn.Module):
    """Base class for similarity / distance functions.

    Args:
        normalize_embeddings: L2-normalise inputs before comparing them.
    """

    higher_is_closer: bool = False

    def __init__(self, normalize_embeddings: bool = False):
        super().__init__()
        self.normalize_embeddings = normalize_embeddings

    def forward(self, query: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        """The (Nq, Nr) matrix between every query row and every ref row (ref defaults to query)."""
        query = self.maybe_normalize(query)
        ref = query if ref is None else self.maybe_normalize(ref)
        return self.compute_matrix(query, ref)

    def pairwise(self, query: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Row-aligned values: distance between ``query[i]`` and ``ref[i]`` -> (N,)."""
        return self.compute_pairwise(self.maybe_normalize(query), self.maybe_normalize(ref))

    def maybe_normalize(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, p=2, dim=-1) if self.normalize_embeddings else x

    def compute_matrix(self, query: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compute_pairwise(self, query: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def margin(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """How much closer ``x`` is than ``y``: positive when ``x`` is the closer one."""
        return x - y if self.higher_is_closer else y - x

    def smallest_closeness(self, dtype: torch.dtype) -> float:
        """A value farther than any real one (used to mask entries out of a max over closeness)."""
        info = torch.finfo(dtype)
        return info.min if self.higher_is_closer else info.max

    def extra_repr(self) -> str:
        return f"normalize_embeddings={self.normalize_embeddings}"
