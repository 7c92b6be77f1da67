"""Retrieval and clustering metrics for labelled embeddings (the deep-metric-learning benchmarks).

Every row is a query against all other rows (leave-one-out); rows that share its label are the
relevant ones. Recall@K, MAP@R and R-precision follow Musgrave et al., "A Metric Learning
Reality Check" (ECCV 2020) and pytorch-metric-learning's ``AccuracyCalculator``; NMI clusters
the embeddings with k-means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

Distance = Literal["cosine", "euclidean", "dot"]
DEFAULT_KS = (1, 2, 4, 8)  # the K of Recall@K


def as_class_ids(labels: torch.Tensor | np.ndarray | Sequence) -> torch.Tensor:
    """Labels of any hashable kind -> int64 class ids 0..C-1."""
    if isinstance(labels, torch.Tensor):
        labels = labels.cpu().numpy()
    _, ids = np.unique(np.asarray(labels), return_inverse=True)
    return torch.from_numpy(ids.reshape(-1).astype(np.int64))


def prepare_embeddings(embeddings: torch.Tensor | np.ndarray, distance: Distance) -> torch.Tensor:
    """Float32 (or float64) embeddings, L2-normalised for cosine."""
    embeddings = torch.as_tensor(embeddings)
    if embeddings.dtype not in (torch.float32, torch.float64):
        embeddings = embeddings.float()
    if distance not in ("cosine", "euclidean", "dot"):
        raise ValueError(f"distance must be 'cosine', 'euclidean' or 'dot', got {distance!r}")
    return F.normalize(embeddings, dim=-1) if distance == "cosine" else embeddings


def closeness(queries: torch.Tensor, corpus: torch.Tensor, distance: Distance) -> torch.Tensor:
    """(Q, N) scores where larger is nearer: inner products, or negated euclidean distances."""
    if distance == "euclidean":
        return -torch.cdist(queries, corpus)
    return queries @ corpus.T


def nearest_neighbour_hits(
    embeddings: torch.Tensor, labels: torch.Tensor, k: int, distance: Distance, chunk_size: int
) -> torch.Tensor:
    """(N, k) booleans: does the i-th nearest other row of each query share its label? Exact search in chunks."""
    hits = []
    for start in range(0, len(embeddings), chunk_size):
        queries = embeddings[start : start + chunk_size]
        scores = closeness(queries, embeddings, distance)  # (chunk, N)
        rows = torch.arange(len(queries), device=scores.device)
        scores[rows, start + rows] = float("-inf")  # leave the query itself out
        neighbours = scores.topk(k, dim=1).indices
        hits.append(labels[neighbours] == labels[start : start + len(queries), None])
    return torch.cat(hits)


def recall_at_k(hits: torch.Tensor, k: int) -> torch.Tensor:
    """Per query: 1 when any of the k nearest shares its label."""
    return hits[:, :k].any(dim=1).double()


def r_precision(hits: torch.Tensor, num_relevant: torch.Tensor) -> torch.Tensor:
    """Per query: the fraction of its R nearest that are relevant (R = its number of relevant rows)."""
    within_r = torch.arange(hits.shape[1], device=hits.device) < num_relevant[:, None]
    return (hits & within_r).sum(dim=1).double() / num_relevant


def map_at_r(hits: torch.Tensor, num_relevant: torch.Tensor) -> torch.Tensor:
    """Per query: mean over the R first ranks of ``precision@i`` at the ranks i that are relevant."""
    ranks = torch.arange(1, hits.shape[1] + 1, device=hits.device)
    within_r = ranks <= num_relevant[:, None]
    precision_at_i = hits.cumsum(dim=1).double() / ranks
    return (precision_at_i * (hits & within_r)).sum(dim=1) / num_relevant


def clustering_nmi(embeddings: torch.Tensor, labels: torch.Tensor, seed: int) -> float:
    """NMI between the labels and k-means clusters (as many clusters as classes)."""
    try:
        from sklearn.cluster import KMeans
        from sklearn.metrics import normalized_mutual_info_score
    except ImportError as err:  # scikit-learn is only needed for this metric
        raise ImportError("NMI needs scikit-learn: pip install scikit-learn (or pass compute_nmi=False)") from err
    num_classes = int(labels.max()) + 1
    clusters = KMeans(n_clusters=num_classes, n_init=1, random_state=seed).fit_predict(embeddings.cpu().numpy())
    return float(normalized_mutual_info_score(labels.cpu().numpy(), clusters))


@torch.no_grad()
def labelled_metric_names(ks: Sequence[int] = DEFAULT_KS, compute_nmi: bool = True) -> list[str]:
    """The keys ``labelled_retrieval_metrics`` returns for these arguments."""
    return [*(f"recall@{k}" for k in ks), "map@r", "r_precision", *(["nmi"] if compute_nmi else [])]


def labelled_retrieval_metrics(
    embeddings: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | Sequence,
    ks: Sequence[int] = DEFAULT_KS,
    distance: Distance = "cosine",
    chunk_size: int = 4096,
    *,
    seed: int = 0,
    compute_nmi: bool = True,
) -> dict[str, float]:
    """Recall@K, MAP@R, R-precision and NMI of labelled embeddings, every row a query against all others.

    - ``recall@k``: the fraction of queries with at least one same-label row among their k
      nearest (the DML "Recall@K"; sentence-transformers calls it accuracy@k).
    - ``map@r``: for a query with R other rows of its class, the mean over the relevant ranks
      i <= R of precision@i, divided by R (Musgrave et al.).
    - ``r_precision``: the fraction of same-label rows among the R nearest.
    - ``nmi``: normalised mutual information between the labels and k-means clusters of the
      (normalised, for cosine) embeddings, with as many clusters as classes.

    Search is exact, ``chunk_size`` queries at a time. Queries whose class has no other row are
    left out of the retrieval metrics (they have nothing to find), as in pytorch-metric-learning.

    Args:
        embeddings: (N, D) embeddings.
        labels: (N,) class of each row (ints, strings, ...).
        ks: the K values of Recall@K.
        distance: ``cosine``, ``euclidean`` or ``dot`` (inner product).
        chunk_size: queries scored at once (bounds the (chunk, N) score matrix).
        seed: k-means seed.
        compute_nmi: skip the clustering (the slow part for large N) when False.

    Returns:
        ``{"recall@1": ..., "map@r": ..., "r_precision": ..., "nmi": ...}`` as floats (NaN for
        the retrieval metrics when no class has two rows).

    Example:
        >>> import torch
        >>> embeddings = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> metrics = labelled_retrieval_metrics(embeddings, [0, 0, 1, 1], ks=(1,))
        >>> metrics["recall@1"], metrics["map@r"], metrics["nmi"]
        (1.0, 1.0, 1.0)
    """
    embeddings = prepare_embeddings(embeddings, distance)
    labels = as_class_ids(labels).to(embeddings.device)
    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise ValueError(f"need (N, D) embeddings and N labels, got {tuple(embeddings.shape)} and {len(labels)}")
    if len(embeddings) < 2:
        raise ValueError("need at least two rows: each row is a query against the others")
    num_relevant = torch.bincount(labels)[labels] - 1  # (N,) other rows of the same class
    # Enough neighbours for the largest K and for every query's R.
    num_neighbours = min(max(max(ks, default=1), int(num_relevant.max())), len(embeddings) - 1)
    hits = nearest_neighbour_hits(embeddings, labels, num_neighbours, distance, chunk_size)
    has_relevant = num_relevant > 0
    hits, num_relevant = hits[has_relevant], num_relevant[has_relevant]

    def average(values: torch.Tensor) -> float:
        return float(values.mean()) if len(values) else math.nan

    metrics = {f"recall@{k}": average(recall_at_k(hits, k)) for k in ks}
    metrics["map@r"] = average(map_at_r(hits, num_relevant))
    metrics["r_precision"] = average(r_precision(hits, num_relevant))
    if compute_nmi:
        metrics["nmi"] = clustering_nmi(embeddings, labels, seed)
    return metrics
