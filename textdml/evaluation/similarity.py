"""STS-style evaluation: how well embedding similarities rank pairs as humans scored them.

For each pair ``(text_1, text_2, gold)`` the model's similarity of the two embeddings is compared
with the gold score by Pearson (linear) and Spearman (rank) correlation, as sentence-transformers'
``EmbeddingSimilarityEvaluator`` (same metric names and values).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr, spearmanr

from textdml.registry import EVALUATORS

SimilarityName = Literal["cosine", "dot", "euclidean", "manhattan"]


def pair_similarities(first: torch.Tensor, second: torch.Tensor, similarity: SimilarityName) -> torch.Tensor:
    """``(N,)`` similarities of aligned rows; distances are negated so that larger is closer."""
    first, second = first.float(), second.float()
    if similarity == "cosine":
        return F.cosine_similarity(first, second, dim=-1)
    if similarity == "dot":
        return (first * second).sum(dim=-1)
    if similarity == "euclidean":
        return -(first - second).norm(dim=-1)
    if similarity == "manhattan":
        return -(first - second).abs().sum(dim=-1)
    raise ValueError(f"similarity must be one of cosine, dot, euclidean, manhattan; got {similarity!r}")


def similarity_correlations(first: torch.Tensor, second: torch.Tensor, gold: Sequence[float],
                            similarities: Sequence[SimilarityName] = ("cosine",)) -> dict[str, float]:
    """``pearson_<similarity>`` and ``spearman_<similarity>`` of the pair similarities against ``gold``."""
    gold_array = np.asarray(gold, dtype=np.float64)
    if len(gold_array) < 2 or np.ptp(gold_array) == 0:
        raise ValueError(f"correlations need at least 2 pairs with different gold scores, got {len(gold_array)} pairs")
    metrics: dict[str, float] = {}
    for name in similarities:
        predicted = pair_similarities(first, second, name).cpu().double().numpy()
        metrics[f"pearson_{name}"] = float(pearsonr(gold_array, predicted)[0])
        metrics[f"spearman_{name}"] = float(spearmanr(gold_array, predicted)[0])
    return metrics


@EVALUATORS.register("embedding_similarity")
class EmbeddingSimilarityEvaluator:
    """Pearson and Spearman correlation of embedding similarity with human similarity scores.

    Args:
        sentences1, sentences2: the two texts of each pair.
        scores: the gold score of each pair (any scale: correlations ignore it).
        name: a prefix for the metric names (``<name>_spearman_cosine``).
        batch_size: texts per forward pass.
        similarities: which similarities to report; the first one's Spearman is the primary metric.

    Example:
        >>> from tests.fakes import HashingEncoder
        >>> evaluator = EmbeddingSimilarityEvaluator(["cat", "dog", "cat"], ["cat", "cat dog", "tree"], [1.0, 0.6, 0.1])
        >>> sorted(evaluator(HashingEncoder()))
        ['pearson_cosine', 'spearman_cosine']
    """

    def __init__(self, sentences1: list[str], sentences2: list[str], scores: Sequence[float], name: str = "",
                 batch_size: int = 64, similarities: Sequence[SimilarityName] = ("cosine",)):
        if not len(sentences1) == len(sentences2) == len(scores):
            raise ValueError(f"{len(sentences1)} first texts, {len(sentences2)} second texts and {len(scores)} "
                             "scores: every pair needs both texts and a score")
        for name_ in similarities:
            pair_similarities(torch.zeros(1, 1), torch.zeros(1, 1), name_)  # validates the names
        self.sentences1, self.sentences2 = list(sentences1), list(sentences2)
        self.scores = [float(s) for s in scores]
        self.name, self.batch_size, self.similarities = name, batch_size, tuple(similarities)
        prefix = f"{name}_" if name else ""
        self.primary_metric = f"{prefix}spearman_{self.similarities[0]}"
        self.metric_names = [f"{prefix}{kind}_{name_}" for name_ in self.similarities for kind in ("pearson", "spearman")]

    def __call__(self, model: Any) -> dict[str, float]:
        # Word-similarity sets repeat their words: embed each distinct text once.
        unique = list(dict.fromkeys(self.sentences1 + self.sentences2))
        row = {text: i for i, text in enumerate(unique)}
        embeddings = torch.as_tensor(model.encode(unique, batch_size=self.batch_size, convert_to="torch"))
        first = embeddings[[row[t] for t in self.sentences1]]
        second = embeddings[[row[t] for t in self.sentences2]]
        metrics = similarity_correlations(first, second, self.scores, self.similarities)
        prefix = f"{self.name}_" if self.name else ""
        return {f"{prefix}{key}": value for key, value in metrics.items()}
