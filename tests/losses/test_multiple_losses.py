from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu
from torch import nn

from textdml.losses.base import BaseLoss, DegenerateBatchWarning
from textdml.losses.contrastive import ContrastiveLoss
from textdml.losses.info_nce import InfoNCELoss
from textdml.losses.multi_similarity import MultiSimilarityLoss
from textdml.losses.multiple_losses import MultipleLosses
from textdml.losses.ntxent import NTXentLoss
from textdml.losses.supervised_contrastive import SupervisedContrastiveLoss
from textdml.losses.triplet import TripletLoss
from textdml.miners.base import BaseMiner, PairIndices, all_pairs, all_triplets
from textdml.registry import LOSSES


class EveryOtherPairMiner(BaseMiner):
    """Keeps every other positive and every third negative pair: enough to change the loss."""

    def mine(self, embeddings, labels, ref_embeddings, ref_labels, same_set):
        pairs = all_pairs(labels, None if same_set else ref_labels)
        return PairIndices(pairs.anchor_pos[::2], pairs.positive[::2], pairs.anchor_neg[::3], pairs.negative[::3])


class PMLEveryOtherPairMiner(pml_miners.BaseMiner):
    def mine(self, embeddings, labels, ref_emb, ref_labels):
        a1, p, a2, n = lmu.get_all_pairs_indices(labels, ref_labels)
        return a1[::2], p[::2], a2[::3], n[::3]


class AllTripletsMiner(BaseMiner):
    def mine(self, embeddings, labels, ref_embeddings, ref_labels, same_set):
        return all_triplets(labels, None if same_set else ref_labels)


class PMLAllTripletsMiner(pml_miners.BaseMiner):
    def mine(self, embeddings, labels, ref_emb, ref_labels):
        return lmu.get_all_triplets_indices(labels, ref_labels)


class ScaledNormLoss(BaseLoss):
    """A toy parametric loss whose parameter wants ten times the loss learning rate."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def compute_loss(self, embeddings, labels, ref_embeddings, ref_labels, same_set, indices):
        return self.scale * embeddings.pow(2).mean()

    def parameter_groups(self, lr):
        return [{"params": [self.scale], "lr": 10 * lr}]


def labelled_batch(seed: int = 0, size: int = 12):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(size, 8, generator=gen), torch.randint(0, 4, (size,), generator=gen)


@pytest.mark.parametrize("use_ref", [False, True])
def test_equals_the_weighted_sum_of_its_losses(use_ref):
    x, labels = labelled_batch()
    ref, ref_labels = labelled_batch(seed=1, size=9) if use_ref else (None, None)
    parts = [TripletLoss(), MultiSimilarityLoss(), NTXentLoss(0.1)]
    weights = [0.3, 1.0, 2.5]
    combined = MultipleLosses(parts, weights=weights)
    value = combined(x, labels, ref_embeddings=ref, ref_labels=ref_labels)
    expected = 0.0
    for loss, weight in zip(parts, weights, strict=True):
        expected = expected + weight * loss(x, labels, ref_embeddings=ref, ref_labels=ref_labels)
    torch.testing.assert_close(value, expected)
    components = combined.last_components
    assert list(components) == ["triplet", "multi_similarity", "ntxent"]
    assert components["triplet"] == pytest.approx(parts[0](x, labels, ref_embeddings=ref, ref_labels=ref_labels).item())


def test_each_miner_feeds_its_own_loss():
    x, labels = labelled_batch()
    miner = EveryOtherPairMiner()
    combined = MultipleLosses([ContrastiveLoss(), ContrastiveLoss()], miners=[miner, None])
    expected = ContrastiveLoss()(x, labels, indices=miner(x, labels)) + ContrastiveLoss()(x, labels)
    torch.testing.assert_close(combined(x, labels), expected)
    assert list(combined.last_components) == ["contrastive_0", "contrastive_1"]


def test_outside_indices_go_to_the_losses_that_take_them():
    x, labels = labelled_batch()
    indices = EveryOtherPairMiner()(x, labels)
    combined = MultipleLosses([InfoNCELoss(), TripletLoss()])
    expected = InfoNCELoss()(x, labels) + TripletLoss()(x, labels, indices=indices)
    torch.testing.assert_close(combined(x, labels, indices=indices), expected)
    with pytest.raises(ValueError, match="mined tuples"):
        MultipleLosses([InfoNCELoss()])(x, labels, indices=indices)


def test_miner_on_pairs_by_position():
    anchors, positives = torch.randn(5, 8), torch.randn(5, 8)
    combined = MultipleLosses([TripletLoss()], miners=[AllTripletsMiner()])
    torch.testing.assert_close(
        combined(anchors, ref_embeddings=positives), TripletLoss()(anchors, ref_embeddings=positives)
    )


def test_moving_positives_closer_lowers_the_loss():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat(3)
    noise = torch.randn(9, 6, generator=gen)
    combined = MultipleLosses([MultiSimilarityLoss(), NTXentLoss(0.1)], weights=[1.0, 0.5])
    values = [combined(torch.eye(3, 6)[labels] + scale * noise, labels).item() for scale in (1.0, 0.5, 0.1)]
    assert values[0] > values[1] > values[2]


def test_degenerate_batch_warns_and_is_zero():
    x = torch.randn(4, 5, requires_grad=True)
    with pytest.warns(DegenerateBatchWarning):
        value = MultipleLosses([NTXentLoss(), SupervisedContrastiveLoss()])(x, torch.zeros(4, dtype=torch.long))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(x.grad).all()


def test_parameter_groups_merge_the_sub_losses_groups():
    combined = MultipleLosses([ScaledNormLoss(), TripletLoss(), ScaledNormLoss()])
    groups = combined.parameter_groups(lr=0.01)
    assert [group["lr"] for group in groups] == [0.1, 0.1]
    assert groups[0]["params"][0] is combined.losses["ScaledNormLoss_0"].scale
    assert groups[1]["params"][0] is combined.losses["ScaledNormLoss_2"].scale


def test_input_kinds_and_citations_come_from_the_sub_losses():
    combined = MultipleLosses([InfoNCELoss(), ContrastiveLoss()])
    assert combined.input_kinds == ("pairs", "triplets")
    assert InfoNCELoss.citation in combined.citation and ContrastiveLoss.citation in combined.citation


@pytest.mark.parametrize(
    "kwargs",
    [
        {"losses": []},
        {"losses": [TripletLoss()], "weights": [1.0, 2.0]},
        {"losses": [InfoNCELoss()], "miners": [AllTripletsMiner()]},
    ],
    ids=["no_loss", "weights_mismatch", "miner_for_a_loss_without_tuples"],
)
def test_bad_configurations_are_refused(kwargs):
    with pytest.raises(ValueError):
        MultipleLosses(**kwargs)


def test_built_from_the_registry():
    combined = LOSSES.build(
        name="multiple_losses", losses=[{"name": "triplet", "margin": 0.2}, {"name": "contrastive"}], weights=[1, 0.5]
    )
    assert combined.losses["triplet"].margin == 0.2 and combined.weights == {"triplet": 1.0, "contrastive": 0.5}
    assert torch.isfinite(combined(*labelled_batch()))


def test_parity_with_pml():
    x, labels = labelled_batch()
    x.requires_grad_()
    weights = [0.3, 1.0, 2.0]
    ours = MultipleLosses(
        [
            ContrastiveLoss(margin=1.0, distance="lp", power=1, reduction="mean_nonzero"),
            MultiSimilarityLoss(),
            TripletLoss(),
        ],
        weights=weights,
        miners=[EveryOtherPairMiner(), None, AllTripletsMiner()],
    )
    theirs = pml_losses.MultipleLosses(
        [pml_losses.ContrastiveLoss(), pml_losses.MultiSimilarityLoss(), pml_losses.TripletMarginLoss()],
        weights=weights,
        miners=[PMLEveryOtherPairMiner(), None, PMLAllTripletsMiner()],
    )
    value = ours(x, labels)
    (grad,) = torch.autograd.grad(value, x)
    expected = theirs(x, labels)
    (expected_grad,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grad, expected_grad)
