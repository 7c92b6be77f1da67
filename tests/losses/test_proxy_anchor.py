from __future__ import annotations

import math

import pytest
import torch
from class_level_checks import EMBEDDING_SIZE, NUM_CLASSES, assert_matches_naive, cosine

from textdml.losses.proxy_anchor import ProxyAnchorLoss


def naive_proxy_anchor(embeddings, labels, proxies, margin, alpha):
    pull_total, push_total, proxies_with_positive = 0.0, 0.0, 0
    for c, p in enumerate(proxies):
        pull_sum, push_sum, has_positive = 0.0, 0.0, False
        for x, y in zip(embeddings, labels.tolist(), strict=True):
            if y == c:
                pull_sum += math.exp(-alpha * (cosine(x, p) - margin))
                has_positive = True
            else:
                push_sum += math.exp(alpha * (cosine(x, p) + margin))
        pull_total += math.log(1 + pull_sum)
        push_total += math.log(1 + push_sum)
        proxies_with_positive += has_positive
    return pull_total / proxies_with_positive + push_total / len(proxies)


@pytest.mark.parametrize("margin, alpha", [(0.1, 32.0), (0.3, 4.0), (0.0, 1.0)])
def test_matches_naive_loop(margin, alpha):
    loss = ProxyAnchorLoss(NUM_CLASSES, EMBEDDING_SIZE, margin=margin, alpha=alpha).double()
    proxies = loss.weight.detach()
    assert_matches_naive(loss, lambda x, y: naive_proxy_anchor(x, y, proxies, margin, alpha))


def test_proxies_without_rows_only_push():
    loss = ProxyAnchorLoss(NUM_CLASSES, EMBEDDING_SIZE).double()
    embeddings = torch.randn(4, EMBEDDING_SIZE, dtype=torch.float64)
    labels = torch.zeros(4, dtype=torch.long)  # only class 0 in the batch
    expected = naive_proxy_anchor(embeddings, labels, loss.weight.detach(), 0.1, 32.0)
    assert math.isclose(loss(embeddings, labels).item(), expected, rel_tol=1e-9)
