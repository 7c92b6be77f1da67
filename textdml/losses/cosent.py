from __future__ import annotations

import torch

from textdml.losses._scored import ScoredPairLoss
from textdml.losses.ops import aligned_cosine
from textdml.registry import LOSSES


@LOSSES.register("cosent")
class CoSENTLoss(ScoredPairLoss):
    """CoSENT: the cosine of every pair must rank the pairs as their gold scores do.

    For every two pairs of the batch whose gold scores differ, the pair scored higher should have
    the higher cosine; each violation costs ``exp(scale * (cos_low - cos_high))``. Only the order
    of the gold scores matters, so any graded scale works once it lies in ``score_range``.

    Formula: ``L = log(1 + sum_{(i, j): y_i > y_j} exp(scale * (cos(a_j, b_j) - cos(a_i, b_i))))``.

    Args:
        scale: the inverse temperature (sentence-transformers' ``scale``, default 20).
        score_range: the range gold scores must lie in ([-1, 1], the cosine's, by default).

    Inputs:
        Scored pairs (columns ``anchor, positive, score``): ``loss(first, scores,
        ref_embeddings=second)``; pair i is ``(embeddings[i], ref_embeddings[i])``.

    Requirements:
        Batches with pairs of different scores (a batch of ties has nothing to rank).

    References:
        Su, "CoSENT: a more efficient sentence vector scheme than Sentence-BERT", 2022;
        Huang et al., "CoSENT: Consistent Sentence Embedding via Similarity Ranking", TASLP 2024.
        Adapted from sentence-transformers' ``CoSENTLoss`` (same value and gradient).

    Example:
        >>> import torch
        >>> loss = CoSENTLoss()
        >>> first, second = torch.randn(4, 8), torch.randn(4, 8)
        >>> loss(first, torch.tensor([0.9, 0.1, 0.5, 0.3]), ref_embeddings=second).shape
        torch.Size([])
    """

    range_reason = "gold scores are ranked against cosines, which lie in [-1, 1]"
    citation = """@article{huang2024cosent,
  title={CoSENT: Consistent Sentence Embedding via Similarity Ranking},
  author={Huang, Xiang and Peng, Hao and Zou, Dongcheng and Liu, Zhiwei and Li, Jianxin and Liu, Kay and Wu, Jia and Su, Jianlin and Yu, Philip S.},
  journal={IEEE/ACM Transactions on Audio, Speech, and Language Processing},
  year={2024}
}"""

    def pair_similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return aligned_cosine(a, b)
