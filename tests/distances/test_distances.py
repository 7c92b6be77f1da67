"""Every distance against a naive loop, with and without ref, plus gradients and PML parity."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import distances as pml_distances

from textdml.distances import CosineSimilarityDistance, DotProductDistance, LpDistance, MahalanobisDistance
from textdml.losses import ContrastiveLoss, TripletLoss
from textdml.registry import DISTANCES


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def naive(fn, query, ref):
    return torch.tensor([[fn(q, r) for r in ref] for q in query], dtype=query.dtype)


def unit(x):
    return x / x.norm()


CASES = {
    "cosine_similarity": (CosineSimilarityDistance(), lambda q, r: float(unit(q) @ unit(r)), True),
    "dot_product": (DotProductDistance(), lambda q, r: float(q @ r), True),
    "lp": (LpDistance(), lambda q, r: float((unit(q) - unit(r)).norm()), False),
    "lp_raw_squared": (LpDistance(squared=True, normalize_embeddings=False), lambda q, r: float(((q - r) ** 2).sum()),
                       False),
    "lp_p1": (LpDistance(p=1, normalize_embeddings=False), lambda q, r: float((q - r).abs().sum()), False),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("with_ref", [False, True])
def test_matrix_and_pairwise_match_a_loop(name, with_ref):
    distance, fn, higher = CASES[name]
    query, ref = randn(5, 4), randn(7, 4, seed=1)
    expected = naive(fn, query, ref if with_ref else query)
    actual = distance(query, ref if with_ref else None)
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(distance.pairwise(query, ref[:5]), torch.diagonal(naive(fn, query, ref[:5])))
    assert distance.higher_is_closer is higher


@pytest.mark.parametrize("name", CASES)
def test_gradients(name):
    distance = CASES[name][0]
    query = randn(4, 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda q: distance(q, randn(5, 3, seed=2)), (query,))


def test_euclidean_gradient_is_finite_at_zero_distance():
    x = randn(3, 4).requires_grad_()
    LpDistance()(x).sum().backward()  # the diagonal is exactly 0
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize(("ours", "theirs"), [
    (LpDistance(), pml_distances.LpDistance()),
    (LpDistance(normalize_embeddings=False, squared=True), pml_distances.LpDistance(normalize_embeddings=False, power=2)),
    (CosineSimilarityDistance(), pml_distances.CosineSimilarity()),
    (DotProductDistance(), pml_distances.DotProductSimilarity(normalize_embeddings=False)),
])
def test_parity_with_pml(ours, theirs):
    query, ref = randn(6, 5, dtype=torch.float32), randn(8, 5, seed=1, dtype=torch.float32)
    torch.testing.assert_close(ours(query, ref), theirs(query, ref), atol=1e-5, rtol=1e-5)
    assert ours.higher_is_closer == theirs.is_inverted


def test_mahalanobis_starts_euclidean_and_stays_psd():
    distance = MahalanobisDistance(embedding_size=4)
    query, ref = randn(5, 4, dtype=torch.float32), randn(6, 4, seed=1, dtype=torch.float32)
    torch.testing.assert_close(distance(query, ref), torch.cdist(query, ref), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        distance.L.copy_(randn(4, 4, seed=3, dtype=torch.float32))
    assert torch.linalg.eigvalsh(distance.matrix).min() > -1e-5
    d = query[0] - ref[0]
    torch.testing.assert_close(distance(query, ref)[0, 0], (d @ distance.matrix @ d).sqrt(), atol=1e-4, rtol=1e-4)


def test_mahalanobis_learns_through_a_loss():
    distance = MahalanobisDistance(embedding_size=4, rank=2)
    loss = ContrastiveLoss(margin=1.0, distance=distance)
    loss(randn(6, 4, dtype=torch.float32), torch.tensor([0, 0, 1, 1, 2, 2])).backward()
    assert distance.L.grad is not None and distance.L.grad.abs().sum() > 0
    assert list(loss.parameters()) == [distance.L]  # the optimiser finds it in the loss's group


def test_losses_accept_distances_by_name():
    assert isinstance(TripletLoss(distance="cosine_similarity").distance, CosineSimilarityDistance)
    assert set(DISTANCES.names()) == {"cosine_similarity", "dot_product", "lp", "mahalanobis", "snr"}
    with pytest.raises(KeyError, match="did you mean 'lp'"):
        TripletLoss(distance="lpp")
