from __future__ import annotations

import torch

from textdml.distances import BaseDistance, LpDistance, as_distance
from textdml.indices import PairIndices, label_masks
from textdml.miners.base import BaseMiner
from textdml.registry import MINERS


@MINERS.register("uniform_histogram")
class UniformHistogramMiner(BaseMiner):
    """Pairs drawn evenly across the range of distances: as many near pairs as far ones.

    The positive pairs' distances are split into ``num_bins`` equal-width bins between their
    smallest and largest value, and ``pos_per_bin`` pairs are drawn (with replacement) from each
    non-empty bin; the same for the negative pairs. The mined set thus covers easy, medium and
    hard pairs alike, whatever the batch's distance distribution.

    Formula: ``bins = linspace(min d, max d, num_bins + 1)``; per non-empty bin, ``k`` uniform draws.

    Args:
        num_bins: number of equal-width distance bins.
        pos_per_bin: positive pairs drawn from each non-empty bin.
        neg_per_bin: negative pairs drawn from each non-empty bin.
        distance: euclidean on L2-normalised embeddings by default, as pytorch-metric-learning.
        generator: random generator for the draws (on the embeddings' device); None uses torch's
            global one.

    Inputs:
        Labelled rows; returns :class:`PairIndices` (repeated pairs are possible).

    Requirements:
        Several samples per class per batch for positive pairs.

    Conventions:
        Mines exactly the pairs of pytorch-metric-learning's ``UniformHistogramMiner`` under the
        same random seed (the same draws in the same order), with one pass over the pairs to
        find their bins instead of one per bin.

    References:
        Xuan et al., "Hard Negative Examples are Hard, but Useful", ECCV 2020 (the uniform
        histogram sampling; as pytorch-metric-learning's documentation cites).

    Example:
        >>> import torch
        >>> miner = UniformHistogramMiner(num_bins=5, pos_per_bin=2, neg_per_bin=3,
        ...                               generator=torch.Generator().manual_seed(0))
        >>> mined = miner(torch.randn(12, 4), torch.arange(12) % 3)
        >>> len(mined.anchor_neg) % 3
        0
    """

    citation = """@inproceedings{xuan2020hard,
  title={Hard Negative Examples are Hard, but Useful},
  author={Xuan, Hong and Stylianou, Abby and Liu, Xiaotong and Pless, Robert},
  booktitle={ECCV},
  year={2020}
}"""

    def __init__(
        self,
        num_bins: int = 100,
        pos_per_bin: int = 10,
        neg_per_bin: int = 10,
        distance: BaseDistance | str | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__(as_distance(distance, LpDistance()))
        if num_bins < 1 or pos_per_bin < 0 or neg_per_bin < 0:
            raise ValueError(f"UniformHistogramMiner: num_bins must be >= 1 and the per-bin counts >= 0, got "
                             f"num_bins={num_bins}, pos_per_bin={pos_per_bin}, neg_per_bin={neg_per_bin}")
        self.num_bins = num_bins
        self.pos_per_bin = pos_per_bin
        self.neg_per_bin = neg_per_bin
        self.generator = generator

    def mine(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
    ) -> PairIndices:
        mat = self.distance(embeddings, ref_embeddings)  # (N, M)
        positive, negative = label_masks(labels, None if same_set else ref_labels)
        anchor_pos, pos = torch.where(positive)
        anchor_neg, neg = torch.where(negative)
        # Positives first, then negatives: the order PML draws in (same seed, same pairs).
        keep_pos = self.draw_per_bin(mat[anchor_pos, pos], self.pos_per_bin)
        keep_neg = self.draw_per_bin(mat[anchor_neg, neg], self.neg_per_bin)
        return PairIndices(anchor_pos[keep_pos], pos[keep_pos], anchor_neg[keep_neg], neg[keep_neg])

    def draw_per_bin(self, values: torch.Tensor, per_bin: int) -> torch.Tensor:
        """Positions into ``values``: ``per_bin`` uniform draws (with replacement) from each non-empty bin."""
        if len(values) == 0 or per_bin == 0:
            return torch.zeros(0, dtype=torch.long, device=values.device)
        edges = torch.linspace(values.min(), values.max(), self.num_bins + 1, device=values.device, dtype=values.dtype)
        # Bin k holds edges[k] <= v < edges[k + 1]; the last bin also holds the maximum.
        bins = torch.bucketize(values, edges[1:-1], right=True)  # (P,)
        order = torch.argsort(bins, stable=True)  # each bin's members in increasing position
        counts = torch.bincount(bins, minlength=self.num_bins).tolist()
        drawn, start = [], 0
        for count in counts:
            if count:
                members = order[start : start + count]
                weights = torch.ones(count, dtype=torch.float, device=values.device)
                draws = torch.multinomial(weights, per_bin, replacement=True, generator=self.generator)
                drawn.append(members[draws])
            start += count
        return torch.cat(drawn)

    def extra_repr(self) -> str:
        return f"num_bins={self.num_bins}, pos_per_bin={self.pos_per_bin}, neg_per_bin={self.neg_per_bin}"
