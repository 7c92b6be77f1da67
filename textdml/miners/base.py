"""The miner contract; the tuple-index types it returns live in :mod:`textdml.indices`.

Miners see rows of ``embeddings`` (the anchor side) and of the reference set, which is
``ref_embeddings`` when given and ``embeddings`` itself otherwise.
"""

from __future__ import annotations

import torch
from torch import nn

from textdml.distances import BaseDistance, LpDistance
from textdml.distances.base import upcast
from textdml.indices import (
    PairIndices,
    TripletIndices,
    TupleIndices,
    all_pairs,
    all_triplets,
    label_masks,
    to_pairs,
    to_triplets,
)

# The index types and helpers moved to textdml.indices; importing them from here keeps working.
__all__ = [
    "BaseMiner", "resolve_ref", "upcast",
    "PairIndices", "TripletIndices", "TupleIndices", "all_pairs", "all_triplets", "label_masks", "to_pairs", "to_triplets",
]


def resolve_ref(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    ref_embeddings: torch.Tensor | None,
    ref_labels: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Return ``(ref_embeddings, ref_labels, same_set)``; ``same_set`` means ref is embeddings itself."""
    if ref_embeddings is None:
        if ref_labels is not None:
            raise ValueError("ref_labels were given without ref_embeddings")
        return embeddings, labels, True
    if ref_labels is None:
        raise ValueError("ref_embeddings need ref_labels (or call with labels=None to pair rows by position)")
    if len(ref_embeddings) != len(ref_labels):
        raise ValueError(f"ref_embeddings has {len(ref_embeddings)} rows but ref_labels has {len(ref_labels)}")
    return ref_embeddings, ref_labels, False


class BaseMiner(nn.Module):
    """Selects informative tuples from a batch, under ``no_grad``.

    Args:
        distance: how rows are compared (default: euclidean on normalised embeddings, as PML).
    """

    def __init__(self, distance: BaseDistance | None = None):
        super().__init__()
        self.distance = distance if distance is not None else LpDistance()

    @torch.no_grad()
    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
    ) -> TupleIndices:
        if labels is None:
            raise ValueError(f"{type(self).__name__} needs labels")
        labels = labels.to(embeddings.device)
        if ref_labels is not None:
            ref_labels = ref_labels.to(embeddings.device)
        ref, ref_lab, same_set = resolve_ref(embeddings.detach(), labels, ref_embeddings, ref_labels)
        return self.mine(upcast(embeddings.detach()), labels, upcast(ref.detach()), ref_lab, same_set)

    def mine(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
    ) -> TupleIndices:
        raise NotImplementedError
