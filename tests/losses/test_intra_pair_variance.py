from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from tests.miners.miner_checks import candidate_rows, random_batch, random_ref_batch
from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.intra_pair_variance import IntraPairVarianceLoss
from textdml.miners.base import PairIndices


def naive_intra_pair_variance(x, labels, ref=None, ref_labels=None, pos_eps=0.01, neg_eps=0.01, distance="cosine"):
    """The two spread terms, one ordered pair at a time."""
    same_set = ref is None
    ref_all = x if same_set else ref
    pos, neg = [], []
    for i in range(len(x)):
        positives, negatives = candidate_rows(labels, None if same_set else ref_labels, i)
        for j in positives + negatives:
            if distance == "cosine":
                value = torch.nn.functional.cosine_similarity(x[i], ref_all[j], dim=0)
            else:
                value = (x[i] / x[i].norm() - ref_all[j] / ref_all[j].norm()).norm()
            (pos if j in positives else neg).append(value)
    pos_mean, neg_mean = sum(pos) / len(pos), sum(neg) / len(neg)
    if distance == "cosine":
        pos_terms = [torch.relu((1 - pos_eps) * pos_mean - s) ** 2 for s in pos]
        neg_terms = [torch.relu(s - (1 + neg_eps) * neg_mean) ** 2 for s in neg]
    else:
        pos_terms = [torch.relu(d - (1 + pos_eps) * pos_mean) ** 2 for d in pos]
        neg_terms = [torch.relu((1 - neg_eps) * neg_mean - d) ** 2 for d in neg]
    return sum(pos_terms) / len(pos_terms) + sum(neg_terms) / len(neg_terms)


@pytest.mark.parametrize("distance", ["cosine", "lp"])
@pytest.mark.parametrize("eps", [(0.01, 0.01), (0.2, 0.05)])
def test_matches_naive_reference(distance, eps):
    x, labels = random_batch(n=10, dim=5, num_classes=3)
    loss = IntraPairVarianceLoss(*eps, distance=None if distance == "cosine" else "lp")
    expected = naive_intra_pair_variance(x, labels, None, None, *eps, distance=distance)
    torch.testing.assert_close(loss(x, labels), expected)


def test_matches_naive_reference_with_ref_embeddings():
    x, labels, ref, ref_labels = random_ref_batch()
    got = IntraPairVarianceLoss(0.1, 0.1)(x, labels, ref_embeddings=ref, ref_labels=ref_labels)
    torch.testing.assert_close(got, naive_intra_pair_variance(x, labels, ref, ref_labels, 0.1, 0.1))


def test_mined_pairs_only():
    x, labels = random_batch(n=8, dim=4, num_classes=2)
    indices = PairIndices(torch.tensor([0, 1, 2]), torch.tensor([2, 3, 4]), torch.tensor([0, 5]), torch.tensor([1, 2]))
    sim = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(x, dim=1).T
    pos, neg = sim[[0, 1, 2], [2, 3, 4]], sim[[0, 5], [1, 2]]
    expected = (torch.relu(0.99 * pos.mean() - pos) ** 2).mean() + (torch.relu(neg - 1.01 * neg.mean()) ** 2).mean()
    torch.testing.assert_close(IntraPairVarianceLoss()(x, labels, indices=indices), expected)


@pytest.mark.parametrize("labels", [[0], [0, 1]], ids=["single_row", "one_pair_each_way"])
def test_no_spread_warns_and_is_zero(labels):
    x = torch.randn(len(labels), 4)
    ref, ref_labels = (None, None) if len(labels) == 1 else (torch.randn(1, 4), torch.tensor([0]))
    x.requires_grad_()
    with pytest.warns(DegenerateBatchWarning, match="at most one"):
        value = IntraPairVarianceLoss()(x, torch.tensor(labels), ref_embeddings=ref, ref_labels=ref_labels)
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("labels", [[0, 0, 0, 0], [0, 1, 2, 3]], ids=["one_class", "no_positive"])
def test_one_sided_batches_still_train(labels):
    x = torch.randn(4, 5, requires_grad=True)
    value = IntraPairVarianceLoss(0.1, 0.1)(x, torch.tensor(labels))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()


def test_identical_embeddings_are_finite():
    x = torch.ones(6, 4, requires_grad=True)
    value = IntraPairVarianceLoss(distance="lp")(x, torch.tensor([0, 0, 1, 1, 2, 2]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()


def test_reduction_none_is_refused():
    with pytest.raises(ValueError, match="reduction 'none'"):
        IntraPairVarianceLoss(reduction="none")


@pytest.mark.parametrize("distance", ["cosine", "lp"])
@pytest.mark.parametrize("mined", [False, True])
def test_parity_with_pml(distance, mined):
    x, labels = random_batch(n=12, dim=8, num_classes=4, seed=1, dtype=torch.float32)
    x.requires_grad_()
    pml_indices = pml_miners.MultiSimilarityMiner(0.3)(x, labels) if mined else None
    indices = PairIndices(*pml_indices) if mined else None
    if distance == "cosine":
        ours, theirs = IntraPairVarianceLoss(0.1, 0.05), pml_losses.IntraPairVarianceLoss(0.1, 0.05)
    else:
        ours = IntraPairVarianceLoss(0.1, 0.05, distance="lp")
        theirs = pml_losses.IntraPairVarianceLoss(0.1, 0.05, distance=pml_distances.LpDistance())
    value = ours(x, labels, indices=indices)
    (grad,) = torch.autograd.grad(value, x)
    expected = theirs(x, labels, pml_indices)
    (expected_grad,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grad, expected_grad)
