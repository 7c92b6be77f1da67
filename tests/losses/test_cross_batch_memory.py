from __future__ import annotations

import copy

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.contrastive import ContrastiveLoss
from textdml.losses.cross_batch_memory import CrossBatchMemory
from textdml.losses.info_nce import InfoNCELoss
from textdml.losses.multi_similarity import MultiSimilarityLoss
from textdml.losses.ntxent import NTXentLoss
from textdml.losses.supervised_contrastive import SupervisedContrastiveLoss
from textdml.losses.triplet import TripletLoss
from textdml.miners.base import BaseMiner, PairIndices, TripletIndices, all_pairs, all_triplets
from textdml.registry import LOSSES

DIM, MEMORY = 8, 20


class AllTripletsMiner(BaseMiner):
    def mine(self, embeddings, labels, ref_embeddings, ref_labels, same_set):
        return all_triplets(labels, None if same_set else ref_labels)


class AllPairsMiner(BaseMiner):
    def mine(self, embeddings, labels, ref_embeddings, ref_labels, same_set):
        return all_pairs(labels, None if same_set else ref_labels)


class PMLAllTripletsMiner(pml_miners.BaseMiner):
    def mine(self, embeddings, labels, ref_emb, ref_labels):
        return lmu.get_all_triplets_indices(labels, ref_labels)


class PMLAllPairsMiner(pml_miners.BaseMiner):
    def mine(self, embeddings, labels, ref_emb, ref_labels):
        return lmu.get_all_pairs_indices(labels, ref_labels)


MINER_TWINS = {
    None: (None, None),
    "pairs": (AllPairsMiner(), PMLAllPairsMiner()),
    "triplets": (AllTripletsMiner(), PMLAllTripletsMiner()),
}


def pml_contrastive_twin() -> ContrastiveLoss:
    """Our ContrastiveLoss set up as pytorch-metric-learning's default one."""
    return ContrastiveLoss(margin=1.0, distance="lp", power=1, reduction="mean_nonzero")


def random_batches(count: int = 5, size: int = 8, classes: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, DIM, generator=gen), torch.randint(0, classes, (size,), generator=gen)) for _ in range(count)
    ]


def value_and_grad(loss_fn, x, labels):
    x = x.clone().requires_grad_()
    value = loss_fn(x, labels)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


def naive_memory_loss(inner, history, x, labels):
    """The inner loss of one batch against the last MEMORY rows seen, pairs built one by one."""
    memory = torch.cat([h for h, _ in history])[-MEMORY:]
    memory_labels = torch.cat([y for _, y in history])[-MEMORY:]
    first_own_row = len(memory) - len(x)  # the batch is the newest part of the memory
    pos, neg = [], []
    for i in range(len(x)):
        for j in range(len(memory)):
            if j == first_own_row + i:
                continue  # a row is never its own positive
            (pos if labels[i] == memory_labels[j] else neg).append((i, j))
    as_tensor = lambda pairs, k: torch.tensor([pair[k] for pair in pairs], dtype=torch.long)  # noqa: E731
    indices = PairIndices(as_tensor(pos, 0), as_tensor(pos, 1), as_tensor(neg, 0), as_tensor(neg, 1))
    return inner(x, labels, ref_embeddings=memory, ref_labels=memory_labels, indices=indices)


@pytest.mark.filterwarnings("ignore::textdml.losses.base.DegenerateBatchWarning")
@pytest.mark.parametrize("make_inner", [pml_contrastive_twin, MultiSimilarityLoss, SupervisedContrastiveLoss])
def test_matches_naive_reference_over_batches(make_inner):
    xbm, inner, history = CrossBatchMemory(make_inner(), DIM, MEMORY), make_inner(), []
    for x, labels in random_batches():
        history.append((x, labels))
        value, grad = value_and_grad(xbm, x, labels)
        expected, expected_grad = value_and_grad(lambda e, y: naive_memory_loss(inner, history, e, y), x, labels)
        torch.testing.assert_close(value, expected)
        torch.testing.assert_close(grad, expected_grad)
    assert int(xbm.queue_count) == MEMORY


PML_TWINS = {
    "contrastive": (pml_contrastive_twin, pml_losses.ContrastiveLoss),
    "multi_similarity": (MultiSimilarityLoss, pml_losses.MultiSimilarityLoss),
    "ntxent": (lambda: NTXentLoss(0.1), lambda: pml_losses.NTXentLoss(0.1)),
    "supervised_contrastive": (SupervisedContrastiveLoss, pml_losses.SupConLoss),
    "triplet": (TripletLoss, pml_losses.TripletMarginLoss),
}


# pml turns a triplet into (a, p, a, n) pairs counted once per triplet, we keep unique pairs:
# pair losses are compared with a pair miner, the triplet loss with both.
PARITY_CASES = (
    [(name, None) for name in PML_TWINS] + [(name, "pairs") for name in PML_TWINS] + [("triplet", "triplets")]
)


@pytest.mark.filterwarnings("ignore::textdml.losses.base.DegenerateBatchWarning")
@pytest.mark.parametrize("name,miner", PARITY_CASES)
def test_parity_with_pml_over_batches(name, miner):
    make_ours, make_theirs = PML_TWINS[name]
    our_miner, their_miner = MINER_TWINS[miner]
    ours = CrossBatchMemory(make_ours(), DIM, MEMORY, miner=our_miner)
    theirs = pml_losses.CrossBatchMemory(make_theirs(), DIM, MEMORY, miner=their_miner)
    for x, labels in random_batches():
        value, grad = value_and_grad(ours, x, labels)
        expected, expected_grad = value_and_grad(theirs, x, labels)
        torch.testing.assert_close(value, expected)
        torch.testing.assert_close(grad, expected_grad)


def test_moving_positives_closer_lowers_the_loss():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat(3)
    noise = torch.randn(12, DIM, generator=gen)
    values = [
        CrossBatchMemory(MultiSimilarityLoss(), DIM, MEMORY)(torch.eye(4, DIM)[labels] + scale * noise, labels).item()
        for scale in (1.0, 0.5, 0.1)
    ]
    assert values[0] > values[1] > values[2]


def test_bfloat16_close_to_float32():
    fp32, bf16 = (
        CrossBatchMemory(MultiSimilarityLoss(), DIM, MEMORY),
        CrossBatchMemory(MultiSimilarityLoss(), DIM, MEMORY),
    )
    for x, labels in random_batches(seed=1):
        x16 = x.bfloat16().requires_grad_()
        value16 = bf16(x16, labels)
        value16.backward()
        assert bf16.embedding_memory.dtype == torch.float32 and torch.isfinite(x16.grad.float()).all()
        torch.testing.assert_close(value16, fp32(x, labels), rtol=0.05, atol=0.02)


def test_gradcheck_with_a_frozen_queue():
    # The memory is a constant by design, so gradcheck runs the loss against a queue that holds still.
    xbm = CrossBatchMemory(MultiSimilarityLoss(beta=10.0), 4, memory_size=10)
    xbm(torch.randn(4, 4), torch.tensor([0, 1, 2, 0]))
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    slots = xbm.enqueue(x, labels)
    assert torch.autograd.gradcheck(lambda e: xbm.loss_against_memory(e, labels, slots), (x,))


def test_queue_is_saved_and_resumed():
    batches = random_batches(count=4)
    first = CrossBatchMemory(pml_contrastive_twin(), DIM, MEMORY)
    for x, labels in batches[:3]:
        first(x, labels)
    assert {"embedding_memory", "label_memory", "queue_index", "queue_count"} <= set(first.state_dict())
    resumed = CrossBatchMemory(pml_contrastive_twin(), DIM, MEMORY)
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    torch.testing.assert_close(resumed(*batches[3]), first(*batches[3]))


def test_reset_queue_starts_afresh():
    batches = random_batches(count=3)
    used = CrossBatchMemory(pml_contrastive_twin(), DIM, MEMORY)
    for x, labels in batches[:2]:
        used(x, labels)
    used.reset_queue()
    fresh = CrossBatchMemory(pml_contrastive_twin(), DIM, MEMORY)
    torch.testing.assert_close(used(*batches[2]), fresh(*batches[2]))


def test_first_single_row_batch_warns():
    x = torch.randn(1, DIM, requires_grad=True)
    with pytest.warns(DegenerateBatchWarning):
        value = CrossBatchMemory(pml_contrastive_twin(), DIM, MEMORY)(x, torch.tensor([3]))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(x.grad).all()


def test_miner_sees_the_memory():
    seen = {}

    class RecordingMiner(AllTripletsMiner):
        def mine(self, embeddings, labels, ref_embeddings, ref_labels, same_set):
            seen["ref_rows"], seen["same_set"] = len(ref_embeddings), same_set
            return super().mine(embeddings, labels, ref_embeddings, ref_labels, same_set)

    xbm = CrossBatchMemory(TripletLoss(), DIM, MEMORY, miner=RecordingMiner())
    for x, labels in random_batches(count=2):
        xbm(x, labels)
    assert seen == {"ref_rows": 16, "same_set": False}


def test_self_comparisons_are_dropped_from_triplets():
    from textdml.losses.cross_batch_memory import drop_self_comparisons

    triplets = TripletIndices(torch.tensor([0, 0, 1]), torch.tensor([5, 6, 7]), torch.tensor([1, 2, 3]))
    kept = drop_self_comparisons(triplets, slots=torch.tensor([5, 7]))
    assert kept.anchor.tolist() == [0] and kept.positive.tolist() == [6]


@pytest.mark.parametrize(
    "call",
    [
        lambda xbm: xbm(torch.randn(MEMORY + 1, DIM), torch.zeros(MEMORY + 1, dtype=torch.long)),
        lambda xbm: xbm(
            torch.randn(4, DIM), torch.zeros(4), ref_embeddings=torch.randn(4, DIM), ref_labels=torch.zeros(4)
        ),
        lambda xbm: xbm(torch.randn(4, DIM), None),
        lambda xbm: xbm(torch.randn(4, DIM + 1), torch.zeros(4)),
    ],
    ids=["batch_over_memory", "ref_given", "no_labels", "wrong_dim"],
)
def test_bad_calls_are_refused(call):
    with pytest.raises(ValueError):
        call(CrossBatchMemory(pml_contrastive_twin(), DIM, MEMORY))


def test_loss_without_tuples_is_refused():
    with pytest.raises(ValueError, match="InfoNCELoss"):
        CrossBatchMemory(InfoNCELoss(), DIM, MEMORY)


def test_built_from_the_registry():
    xbm = LOSSES.build(
        name="cross_batch_memory", loss={"name": "contrastive", "margin": 0.3}, embedding_size=DIM, memory_size=16
    )
    assert isinstance(xbm.loss, ContrastiveLoss) and xbm.loss.margin == 0.3
    assert torch.isfinite(xbm(*random_batches(count=1)[0]))


@pytest.mark.gpu
def test_runs_on_cuda_with_a_cpu_queue():
    xbm = CrossBatchMemory(MultiSimilarityLoss(), DIM, MEMORY)  # buffers start on the CPU
    reference = CrossBatchMemory(MultiSimilarityLoss(), DIM, MEMORY)
    for x, labels in random_batches():
        value = xbm(x.cuda(), labels.cuda())
        assert xbm.embedding_memory.is_cuda
        torch.testing.assert_close(value.cpu(), reference(x, labels), rtol=1e-4, atol=1e-5)
