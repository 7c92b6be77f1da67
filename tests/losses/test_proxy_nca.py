from __future__ import annotations

import math

import pytest
import torch
from class_level_checks import EMBEDDING_SIZE, NUM_CLASSES, assert_matches_naive, labelled_rows

from textdml.losses.norm_softmax import NormSoftmaxLoss
from textdml.losses.proxy_nca import ProxyNCALoss


def naive_proxy_nca(embeddings, labels, proxies, softmax_scale):
    losses = []
    for x, y in zip(embeddings, labels.tolist(), strict=True):
        x = x / x.norm()
        closeness = [math.exp(-softmax_scale * float(((x - p / p.norm()) ** 2).sum())) for p in proxies]
        losses.append(-math.log(closeness[y] / sum(closeness)))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("softmax_scale", [1.0, 3.0, 9.0])
def test_matches_naive_loop(softmax_scale):
    loss = ProxyNCALoss(NUM_CLASSES, EMBEDDING_SIZE, softmax_scale=softmax_scale).double()
    proxies = loss.weight.detach()
    assert_matches_naive(loss, lambda x, y: naive_proxy_nca(x, y, proxies, softmax_scale))


def test_equals_norm_softmax_at_temperature_one_over_twice_the_scale():
    proxy_nca = ProxyNCALoss(NUM_CLASSES, EMBEDDING_SIZE, softmax_scale=5.0).double()
    norm_softmax = NormSoftmaxLoss(NUM_CLASSES, EMBEDDING_SIZE, temperature=0.1).double()
    norm_softmax.load_state_dict(proxy_nca.state_dict())
    embeddings, labels = labelled_rows()
    torch.testing.assert_close(proxy_nca(embeddings, labels), norm_softmax(embeddings, labels))


def test_far_rows_keep_a_finite_loss():
    # pytorch-metric-learning drops rows whose probability underflows to 0; the stable log-softmax keeps them.
    loss = ProxyNCALoss(NUM_CLASSES, EMBEDDING_SIZE, softmax_scale=500.0)
    embeddings, labels = labelled_rows(dtype=torch.float32)
    with torch.no_grad():
        loss.weight.copy_(-embeddings[:NUM_CLASSES])  # every row sits opposite its own proxy
    value = loss(embeddings[:NUM_CLASSES], labels[:NUM_CLASSES])
    assert torch.isfinite(value) and value > 100
