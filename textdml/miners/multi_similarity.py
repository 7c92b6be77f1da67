from __future__ import annotations

import torch

from textdml.distances import BaseDistance, CosineSimilarityDistance, as_distance
from textdml.indices import PairIndices, label_masks
from textdml.miners.base import BaseMiner
from textdml.registry import MINERS


@MINERS.register("multi_similarity")
class MultiSimilarityMiner(BaseMiner):
    """Keeps the pairs that are informative relative to the anchor's hardest pair of the other kind (Wang et al.).

    A negative pair is kept when it is more similar than the anchor's least similar positive
    minus ``epsilon``; a positive pair when it is less similar than the anchor's most similar
    negative plus ``epsilon``. This is the pair mining step of the multi-similarity loss.

    Formula: ``keep n if s(a, n) + eps > min_p s(a, p)``; ``keep p if s(a, p) - eps < max_n s(a, n)``.

    Args:
        epsilon: the slack ``eps`` of the comparisons (in similarity or distance units).
        distance: cosine similarity by default; with a distance the comparisons flip.

    Inputs:
        Labelled rows; returns :class:`PairIndices`.

    Requirements:
        Several samples per class per batch (an m-per-class sampler); an anchor without a
        positive (or without a negative) contributes no pair.

    Conventions:
        Selects exactly the pairs of pytorch-metric-learning's MultiSimilarityMiner.

    References:
        Wang, Han, Huang, Dong, Scott, "Multi-Similarity Loss with General Pair Weighting for Deep
        Metric Learning", CVPR 2019.

    Example:
        >>> import torch
        >>> miner = MultiSimilarityMiner(epsilon=0.1)
        >>> pairs = miner(torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
        >>> len(pairs.anchor_pos) == len(pairs.positive)
        True
    """

    citation = """@inproceedings{wang2019multi,
  title={Multi-Similarity Loss with General Pair Weighting for Deep Metric Learning},
  author={Wang, Xun and Han, Xintong and Huang, Weilin and Dong, Dengke and Scott, Matthew R.},
  booktitle={CVPR},
  year={2019}
}"""

    def __init__(self, epsilon: float = 0.1, distance: BaseDistance | str | None = None):
        super().__init__(as_distance(distance, CosineSimilarityDistance()))
        self.epsilon = epsilon

    def mine(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor,
        ref_labels: torch.Tensor,
        same_set: bool,
    ) -> PairIndices:
        mat = self.distance(embeddings, ref_embeddings)  # (N, M)
        # One orientation: larger closeness means more similar, for similarities and distances alike.
        closeness = mat if self.distance.higher_is_closer else -mat
        positive, negative = label_masks(labels, None if same_set else ref_labels)
        # An anchor without positives (negatives) gets +inf (-inf), so it keeps no pair of the other kind.
        least_close_pos = closeness.masked_fill(~positive, float("inf")).min(dim=1, keepdim=True).values
        most_close_neg = closeness.masked_fill(~negative, float("-inf")).max(dim=1, keepdim=True).values
        hard_pos = positive & (closeness - self.epsilon < most_close_neg)
        hard_neg = negative & (closeness + self.epsilon > least_close_pos)
        a1, p = torch.where(hard_pos)
        a2, n = torch.where(hard_neg)
        return PairIndices(a1, p, a2, n)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"
