from __future__ import annotations

from typing import Literal

import torch

from textdml.distances import BaseDistance, LpDistance, as_distance
from textdml.indices import PairIndices, label_masks
from textdml.miners.base import BaseMiner
from textdml.registry import MINERS

Strategy = Literal["easy", "semihard", "hard", "all"]
STRATEGIES = ("easy", "semihard", "hard", "all")


def pick_per_row(
    farness: torch.Tensor, mask: torch.Tensor, farthest: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The farthest (or closest) allowed column of each row: ``(value, column, row_has_one)``."""
    fill = float("-inf") if farthest else float("inf")
    masked = farness.masked_fill(~mask, fill)
    values, columns = masked.max(dim=1) if farthest else masked.min(dim=1)
    return values, columns, mask.any(dim=1)


def in_range(mat: torch.Tensor, allowed: tuple[float, float] | None) -> torch.Tensor:
    """Entries of ``mat`` inside the closed interval ``allowed`` (everything when None)."""
    if allowed is None:
        return torch.ones_like(mat, dtype=torch.bool)
    low, high = allowed
    return (mat >= low) & (mat <= high)


@MINERS.register("batch_easy_hard")
class BatchEasyHardMiner(BaseMiner):
    """Picks one positive and one negative per anchor, each by its own strategy (Xuan et al.).

    ``easy`` means the closest positive / the farthest negative, ``hard`` the farthest positive /
    the closest negative, ``semihard`` the hardest one that is still easier than the pair picked
    by the other strategy (a positive closer than the picked negative, or a negative farther than
    the picked positive), and ``all`` keeps every pair of that kind. The default (easy positive,
    semihard negative) is the recipe of the paper for classes with high intra-class variance.

    Formula: ``p*(a) = argmin_p d(a, p)`` (easy), ``n*(a) = argmin_{n: d(a, n) > d(a, p*)} d(a, n)`` (semihard).

    Args:
        pos_strategy: ``easy``, ``semihard``, ``hard`` or ``all``.
        neg_strategy: ``easy``, ``semihard``, ``hard`` or ``all``.
        allowed_pos_range: only positives whose distance (similarity) lies in ``[low, high]``.
        allowed_neg_range: only negatives whose distance (similarity) lies in ``[low, high]``.
        distance: euclidean on L2-normalised embeddings by default, as pytorch-metric-learning.

    Inputs:
        Labelled rows; returns :class:`PairIndices` (one positive and one negative pair per
        anchor when neither strategy is ``all``; a triplet loss joins them by anchor).

    Requirements:
        Several samples per class in a batch (an m-per-class sampler). ``semihard`` cannot be
        used for both kinds, nor together with ``all``.

    Conventions:
        Selects exactly the pairs of pytorch-metric-learning's BatchEasyHardMiner; an anchor is
        kept only when both of its picks exist (for ``all``, each kind is kept on its own). One
        difference: an allowed range also filters a kind mined with ``all`` (pytorch-metric-learning
        ignores the range there).

    References:
        Xuan, Stylianou, Pless, "Improved Embeddings with Easy Positive Triplet Mining", WACV 2020.
        Adapted from pytorch-metric-learning.

    Example:
        >>> import torch
        >>> miner = BatchEasyHardMiner(pos_strategy="easy", neg_strategy="semihard")
        >>> pairs = miner(torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
        >>> bool((pairs.anchor_pos == pairs.anchor_neg).all())
        True
    """

    citation = """@inproceedings{xuan2020improved,
  title={Improved Embeddings with Easy Positive Triplet Mining},
  author={Xuan, Hong and Stylianou, Abby and Pless, Robert},
  booktitle={WACV},
  year={2020}
}"""

    def __init__(
        self,
        pos_strategy: Strategy = "easy",
        neg_strategy: Strategy = "semihard",
        allowed_pos_range: tuple[float, float] | None = None,
        allowed_neg_range: tuple[float, float] | None = None,
        distance: BaseDistance | str | None = None,
    ):
        super().__init__(as_distance(distance, LpDistance()))
        if pos_strategy not in STRATEGIES or neg_strategy not in STRATEGIES:
            raise ValueError(f"pos_strategy and neg_strategy must each be one of {STRATEGIES}")
        if pos_strategy == neg_strategy == "semihard":
            raise ValueError("pos_strategy and neg_strategy cannot both be 'semihard'")
        if "semihard" in (pos_strategy, neg_strategy) and "all" in (pos_strategy, neg_strategy):
            raise ValueError("'semihard' needs a single pick of the other kind; it cannot be combined with 'all'")
        self.pos_strategy = pos_strategy
        self.neg_strategy = neg_strategy
        self.allowed_pos_range = allowed_pos_range
        self.allowed_neg_range = allowed_neg_range

    def mine(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
    ) -> PairIndices:
        mat = self.distance(embeddings, ref_embeddings)  # (N, M)
        # One orientation for every strategy: larger farness means farther apart.
        farness = -mat if self.distance.higher_is_closer else mat
        positive, negative = label_masks(labels, None if same_set else ref_labels)
        positive &= in_range(mat, self.allowed_pos_range)
        negative &= in_range(mat, self.allowed_neg_range)
        all_pos, all_neg = torch.where(positive), torch.where(negative)

        # A semihard pick depends on the other kind's pick, so that one is made first.
        if self.pos_strategy == "semihard":
            neg_farness, neg_col, has_neg = self.pick_negatives(farness, negative)
            pos_farness, pos_col, has_pos = self.pick_positives(farness, positive & (farness < neg_farness[:, None]))
        elif self.neg_strategy == "semihard":
            pos_farness, pos_col, has_pos = self.pick_positives(farness, positive)
            neg_farness, neg_col, has_neg = self.pick_negatives(farness, negative & (farness > pos_farness[:, None]))
        else:
            pos_farness, pos_col, has_pos = self.pick_positives(farness, positive)
            neg_farness, neg_col, has_neg = self.pick_negatives(farness, negative)

        rows = torch.arange(len(mat), device=mat.device)
        if "all" not in (self.pos_strategy, self.neg_strategy):
            keep = has_pos & has_neg
            return PairIndices(rows[keep], pos_col[keep], rows[keep], neg_col[keep])
        pos_pairs = all_pos if self.pos_strategy == "all" else (rows[has_pos], pos_col[has_pos])
        neg_pairs = all_neg if self.neg_strategy == "all" else (rows[has_neg], neg_col[has_neg])
        return PairIndices(pos_pairs[0], pos_pairs[1], neg_pairs[0], neg_pairs[1])

    def pick_positives(
        self, farness: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Hard and semihard positives are the farthest allowed ones, easy the closest.
        return pick_per_row(farness, mask, farthest=self.pos_strategy != "easy")

    def pick_negatives(
        self, farness: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Hard and semihard negatives are the closest allowed ones, easy the farthest.
        return pick_per_row(farness, mask, farthest=self.neg_strategy == "easy")

    def extra_repr(self) -> str:
        return f"pos_strategy={self.pos_strategy!r}, neg_strategy={self.neg_strategy!r}"
