from __future__ import annotations

import torch
import torch.nn.functional as F

from textdml.losses._margin_softmax import ClassLevelLoss, cosine_to_rows, new_class_weights
from textdml.registry import LOSSES


def log_one_plus_sum_exp(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Per column, ``log(1 + sum of exp(values) over the kept rows)``; 0 for a column with none kept."""
    values = values.masked_fill(~keep, float("-inf"))
    # The extra zero row is the "1 +": it keeps the logsumexp finite (and its gradient defined)
    # for a column with no kept row.
    zeros = values.new_zeros(1, values.shape[1])
    return torch.logsumexp(torch.cat([values, zeros]), dim=0)


@LOSSES.register("proxy_anchor")
class ProxyAnchorLoss(ClassLevelLoss):
    """Proxy-Anchor: each class proxy is an anchor that pulls all its batch rows and pushes the rest.

    Every proxy is compared with every row of the batch: a soft maximum (log-sum-exp) over its
    positives pulls the hardest ones closer than ``margin``, one over its negatives pushes the
    hardest ones past ``-margin``. Rows interact with each other through the proxies, which
    gives pair-based richness at proxy-based cost.

    Formula: ``L = 1/|P+| sum_{p in P+} log(1 + sum_{x in X_p+} e^{-a (cos(x, p) - m)}) + 1/|P| sum_{p in P} log(1 + sum_{x in X_p-} e^{a (cos(x, p) + m)})``.

    Args:
        num_classes: the number of classes (filled by the trainer from the data).
        embedding_size: the embedding dimension (filled by the trainer from the model).
        margin: ``m``, the cosine margin (0.1 as the paper).
        alpha: ``a``, the scale of the soft maximum (32 as the paper).

    Inputs:
        Labelled rows with class ids ``0 .. num_classes - 1``. ``ref_embeddings`` / ``ref_labels``
        (rows from other devices, a second view) are used as more labelled rows.

    Requirements:
        The proxies are parameters of the loss: give them an optimiser group
        (``parameter_groups``); the paper uses a 100x larger learning rate for them.

    Conventions:
        ``P+`` are the proxies with at least one row in the batch, ``P`` all proxies (the paper,
        its code and pytorch-metric-learning). ``weight`` holds the proxies,
        ``(num_classes, embedding_size)`` like pytorch-metric-learning's ``proxies``, initialised
        as the paper's code (Kaiming normal, fan-out).

    References:
        Kim et al., "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020; code adapted from the
        equations and https://github.com/tjddus9597/Proxy-Anchor-CVPR2020. Compared with
        pytorch-metric-learning's ProxyAnchorLoss.

    Example:
        >>> import torch
        >>> loss = ProxyAnchorLoss(num_classes=3, embedding_size=8)
        >>> loss(torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])).shape
        torch.Size([])
    """

    citation = """@inproceedings{kim2020proxy,
  title={Proxy Anchor Loss for Deep Metric Learning},
  author={Kim, Sungyeon and Kim, Dongwon and Cho, Minsu and Kwak, Suha},
  booktitle={CVPR},
  year={2020}
}"""

    def __init__(self, num_classes: int, embedding_size: int, margin: float = 0.1, alpha: float = 32.0):
        super().__init__(num_classes, embedding_size)
        self.margin = margin
        self.alpha = alpha
        self.weight = new_class_weights(num_classes, embedding_size, init="kaiming_normal")

    def class_loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = cosine_to_rows(embeddings, self.weight)  # (N, C)
        is_positive = F.one_hot(labels, self.num_classes).bool()  # (N, C)
        pull = log_one_plus_sum_exp(-self.alpha * (cos - self.margin), is_positive)  # (C,)
        push = log_one_plus_sum_exp(self.alpha * (cos + self.margin), ~is_positive)  # (C,)
        proxies_with_positive = is_positive.any(dim=0).sum()
        return pull.sum() / proxies_with_positive + push.sum() / self.num_classes

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, embedding_size={self.embedding_size}, margin={self.margin}, alpha={self.alpha}"
