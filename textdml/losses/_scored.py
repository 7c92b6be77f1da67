"""Shared machinery of the losses that learn from graded pair scores (CoSENT, AnglE).

Their inputs follow the loss contract with one reading of ``labels``: pair ``i`` is
``(embeddings[i], ref_embeddings[i])`` and ``labels[i]`` is its gold similarity score (a float),
as sentence-transformers' ``labels`` for these losses.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from textdml.indices import TupleIndices
from textdml.losses.base import BaseLoss
from textdml.losses.needs import LossNeeds
from textdml.miners.base import upcast


def check_score_range(scores: torch.Tensor, score_range: tuple[float, float], owner: str, why: str) -> None:
    """Raise a ``ValueError`` naming the first score outside ``[low, high]`` and the fix."""
    low, high = score_range
    outside = (scores < low) | (scores > high) | ~torch.isfinite(scores)
    if outside.any():
        row = int(outside.nonzero()[0, 0])
        raise ValueError(
            f"{owner}: the score of pair {row} is {scores[row].item():g}, outside the loss's range "
            f"[{low:g}, {high:g}] ({why}). Rescale the score column into [{low:g}, {high:g}] (e.g. 0-5 STS "
            "scores divided by 5), or declare the range your scores live in with loss.score_range=[low, high]."
        )


def ranking_log_loss(similarities: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """``log(1 + sum_{(i, j): scores_i > scores_j} exp(similarities_j - similarities_i))``.

    O(B log B): sorted by gold score, pair ``i`` meets every pair of strictly lower score through a
    prefix log-sum-exp, so the (B, B) matrix of score differences is never built. Ties in the gold
    scores contribute nothing.
    """
    scores, order = scores.sort()
    similarities = similarities[order]
    prefix = torch.logcumsumexp(similarities, dim=0)  # prefix[k] = logsumexp(similarities[: k + 1])
    prefix = torch.cat([prefix.new_full((1,), float("-inf")), prefix])
    lower = torch.searchsorted(scores, scores, right=False)  # pairs with a strictly lower score
    terms = prefix[lower] - similarities
    return torch.cat([terms.new_zeros(1), terms]).logsumexp(dim=0)


class ScoredPairLoss(BaseLoss):
    """Base of the graded-score losses: input checks, the score range, float32 maths.

    Subclasses give ``pair_similarity``; the loss ranks pairs by it against their gold scores.
    """

    needs: ClassVar[LossNeeds] = LossNeeds(
        input_kinds=("scores",),
        # The task feeds these losses ``(anchor, positive, score)`` pairs (``textdml.training.tasks.scores``).
        takes_scores=True,
    )
    #: Why the default range is what it is, for the error message.
    range_reason: ClassVar[str] = "the range of the similarity the gold scores are ranked against"

    def __init__(self, scale: float = 20.0, score_range: tuple[float, float] | list[float] = (-1.0, 1.0)):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        if len(score_range) != 2 or not score_range[0] < score_range[1]:
            raise ValueError(f"score_range must be [low, high] with low < high, got {score_range}")
        self.scale = scale
        self.score_range = (float(score_range[0]), float(score_range[1]))

    def pair_similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``(N, D), (N, D) -> (N,)``: the similarity of each pair."""
        raise NotImplementedError

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        ref_embeddings: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
        indices: TupleIndices | None = None,
    ) -> torch.Tensor:
        name = type(self).__name__
        if ref_embeddings is None or labels is None:
            raise ValueError(f"{name} takes scored pairs: loss(first_texts, scores, ref_embeddings=second_texts) "
                             "(data columns anchor, positive, score)")
        if ref_labels is not None or indices is not None:
            raise ValueError(f"{name} takes no ref_labels or mined tuples: pair i is (embeddings[i], ref_embeddings[i])")
        if embeddings.ndim != 2 or embeddings.shape != ref_embeddings.shape:
            raise ValueError(f"{name}: embeddings {tuple(embeddings.shape)} and ref_embeddings "
                             f"{tuple(ref_embeddings.shape)} must both be (N, D), one row per pair")
        scores = labels.reshape(-1).to(embeddings.device)
        if len(scores) != len(embeddings):
            raise ValueError(f"{name}: {len(embeddings)} pairs but {len(scores)} scores")
        scores = upcast(scores) if scores.is_floating_point() else scores.float()
        check_score_range(scores, self.score_range, name, self.range_reason)
        if len(scores) < 2 or bool((scores == scores[0]).all()):
            return self.empty_loss(embeddings, "every pair has the same score: there is no order to learn")
        similarities = self.pair_similarity(upcast(embeddings), upcast(ref_embeddings))  # (N,)
        return ranking_log_loss(similarities * self.scale, scores)
