from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch

from textdml.indices import PairIndices, TripletIndices, TupleIndices, all_pairs, all_triplets
from textdml.miners.base import BaseMiner
from textdml.registry import LOSSES, MINERS

if TYPE_CHECKING:
    # Only for hints: textdml.losses imports textdml.miners, so a runtime import here would be circular.
    from textdml.losses.base import BaseLoss


def select_pairs(pairs: PairIndices, keep: torch.Tensor) -> PairIndices:
    """The pairs at positions ``keep`` of ``cat(positive pairs, negative pairs)``."""
    num_pos = len(pairs.anchor_pos)
    pos, neg = keep[keep < num_pos], keep[keep >= num_pos] - num_pos
    return PairIndices(pairs.anchor_pos[pos], pairs.positive[pos], pairs.anchor_neg[neg], pairs.negative[neg])


@MINERS.register("maximum_loss")
class MaximumLossMiner(BaseMiner):
    """Keeps the ``k`` tuples of the batch on which a given loss is largest (online hardest-example mining).

    Every candidate tuple of the batch (all valid triplets, or all positive and negative pairs)
    is scored by ``loss`` built with ``reduction="none"``, and the ``k`` with the largest
    per-tuple loss are returned, whatever loss defines "hard".

    Formula: ``keep top_k over tuples t of loss(t)``.

    Args:
        loss: a loss with ``reduction="none"`` that takes miner tuples and returns one value per
            tuple (``TripletLoss``, ``ContrastiveLoss``), or a loss registry name, which is
            built with ``reduction="none"``.
        k: how many tuples to keep (all of them when the batch has fewer).
        tuple_kind: score ``triplets`` or ``pairs``. For pairs the loss must return
            ``cat(positive-pair losses, negative-pair losses)``, as ``ContrastiveLoss`` does.

    Inputs:
        Labelled rows; returns :class:`TripletIndices` or :class:`PairIndices`.

    Requirements:
        Enumerating every triplet costs O(B^3) memory: keep batches moderate, or use pairs.

    Conventions:
        pytorch-metric-learning's MaximumLossMiner samples random subsets of tuples and keeps the
        subset with the largest mean loss; this miner is deterministic and keeps the k individually
        hardest tuples.

    References:
        Shrivastava, Gupta, Girshick, "Training Region-based Object Detectors with Online Hard
        Example Mining", CVPR 2016.

    Example:
        >>> import torch
        >>> from textdml.losses import TripletLoss
        >>> miner = MaximumLossMiner(TripletLoss(margin=0.2, reduction="none"), k=5)
        >>> len(miner(torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])))
        5
    """

    citation = """@inproceedings{shrivastava2016training,
  title={Training Region-based Object Detectors with Online Hard Example Mining},
  author={Shrivastava, Abhinav and Gupta, Abhinav and Girshick, Ross},
  booktitle={CVPR},
  year={2016}
}"""

    def __init__(self, loss: BaseLoss | str, k: int = 64, tuple_kind: Literal["triplets", "pairs"] = "triplets"):
        super().__init__()
        if isinstance(loss, str):
            loss = LOSSES.build(name=loss, reduction="none")
        needs = getattr(loss, "needs", None)  # a loss from outside the catalogue declares none
        if needs is None or not needs.accepts_indices:
            raise ValueError(f"{type(loss).__name__} does not take mined tuples, so it cannot score them")
        if getattr(loss, "reduction", "none") != "none":
            raise ValueError(f"{type(loss).__name__} must be built with reduction='none' to score each tuple")
        if tuple_kind not in ("triplets", "pairs"):
            raise ValueError(f"tuple_kind must be 'triplets' or 'pairs', got {tuple_kind!r}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.loss = loss
        self.k = k
        self.tuple_kind = tuple_kind

    def mine(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
    ) -> TupleIndices:
        enumerate_all = all_triplets if self.tuple_kind == "triplets" else all_pairs
        candidates = enumerate_all(labels, None if same_set else ref_labels)
        if len(candidates) == 0:
            return candidates
        if same_set:
            losses = self.loss(embeddings, labels, indices=candidates)
        else:
            losses = self.loss(
                embeddings, labels, ref_embeddings=ref_embeddings, ref_labels=ref_labels, indices=candidates
            )
        if losses.shape != (len(candidates),):
            raise ValueError(
                f"{type(self.loss).__name__} returned shape {tuple(losses.shape)} for {len(candidates)} "
                f"{self.tuple_kind}; it must return one loss per tuple (reduction='none')"
            )
        # Sorted positions keep the tuples in the order they were enumerated.
        keep = losses.topk(min(self.k, len(losses))).indices.sort().values
        if isinstance(candidates, TripletIndices):
            return TripletIndices(candidates.anchor[keep], candidates.positive[keep], candidates.negative[keep])
        return select_pairs(candidates, keep)

    def extra_repr(self) -> str:
        return f"k={self.k}, tuple_kind={self.tuple_kind!r}"
