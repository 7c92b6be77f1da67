"""Cross-device loss parity: 2 gloo processes on CPU against one process on the concatenated batch.

Each rank backpropagates its local loss (times the scale the module docstring prescribes). DDP
averages gradients over ranks, so the parity to check is ``local grad / W == single-process grad``
for every rank's rows, and ``mean over ranks of the local losses == single-process loss``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from textdml.distributed import (
    all_gather_no_grad,
    all_gather_with_grad,
    compute_local_loss,
    gather_for_loss,
    is_distributed,
    rank,
    world_size,
)
from textdml.losses.base import BaseLoss
from textdml.losses.contrastive import ContrastiveLoss
from textdml.losses.fast_ap import FastAPLoss
from textdml.losses.info_nce import InfoNCELoss
from textdml.losses.instance import InstanceLoss
from textdml.losses.smooth_ap import SmoothAPLoss
from textdml.losses.triplet import TripletLoss
from textdml.miners.base import BaseMiner, PairIndices, TripletIndices, all_triplets
from textdml.training.grad_cache import cached_backward

W, DIM = 2, 8


class AllTripletsMiner(BaseMiner):
    """Every valid triplet (self-comparisons included when given a separate ref set)."""

    def mine(self, embeddings, labels, ref_embeddings, ref_labels, same_set):
        return all_triplets(labels, None if same_set else ref_labels)


@dataclass
class Case:
    """One loss on one batch: per-rank inputs, the concatenated batch, and how rows map between them."""

    loss: BaseLoss
    local: list[dict]  # per rank: embeddings, labels, ref_embeddings, ref_labels, indices
    single: dict  # the same rows concatenated, for one process
    anchor_rows: list[torch.Tensor]  # per rank: where its anchors sit in the single batch
    ref_rows: list[torch.Tensor | None]  # per rank: where its ref rows sit in the single ref set
    scale: list[float] = field(default_factory=lambda: [1.0] * W)  # per-rank loss multiplier
    miner: BaseMiner | None = None


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def pair_case(loss: BaseLoss, counts: list[int], with_negatives: bool, seed: int) -> Case:
    """Pair layout (labels=None): rank r holds anchors, positives and one hard negative per anchor."""
    total = sum(counts)
    anchors, positives, negatives = randn(total, DIM, seed=seed), randn(total, DIM, seed=seed + 1), randn(total, DIM, seed=seed + 2)
    starts = [sum(counts[:r]) for r in range(W)]
    rows = [torch.arange(s, s + n) for s, n in zip(starts, counts, strict=True)]
    local, ref_rows = [], []
    for own in rows:
        ref = torch.cat([positives[own], negatives[own]]) if with_negatives else positives[own]
        local.append({"embeddings": anchors[own], "ref_embeddings": ref})
        # The single ref set is all positives, then all negatives (positives first keep position pairing).
        ref_rows.append(torch.cat([own, own + total]) if with_negatives else own)
    single_ref = torch.cat([positives, negatives]) if with_negatives else positives
    scale = [W * n / total for n in counts]  # unequal batches: weight each rank's mean by its share
    return Case(loss, local, {"embeddings": anchors, "ref_embeddings": single_ref}, rows, ref_rows, scale)


def labelled_pair_case(seed: int) -> Case:
    """Pairs with text-id labels; a positive text repeated on both ranks is a positive, not a negative."""
    case = pair_case(InfoNCELoss(), [3, 3], with_negatives=True, seed=seed)
    labels = torch.tensor([0, 1, 2, 3, 0, 5])
    negative_labels = torch.tensor([10, 11, 12, 13, 1, 15])  # rank 1's second negative repeats positive 1
    for own, inputs in zip(case.anchor_rows, case.local, strict=True):
        inputs["labels"], inputs["ref_labels"] = labels[own], torch.cat([labels[own], negative_labels[own]])
    case.single["labels"], case.single["ref_labels"] = labels, torch.cat([labels, negative_labels])
    return case


def labelled_case(loss: BaseLoss, labels: torch.Tensor, seed: int, scale: float, miner: BaseMiner | None = None) -> Case:
    """Labelled rows without a ref set: each rank's anchors against every rank's rows, self excluded."""
    embeddings = randn(len(labels), DIM, seed=seed)
    n = len(labels) // W
    rows = [torch.arange(r * n, (r + 1) * n) for r in range(W)]
    local = [{"embeddings": embeddings[own], "labels": labels[own]} for own in rows]
    single = {"embeddings": embeddings, "labels": labels}
    if miner is not None:
        single["indices"] = miner(embeddings, labels)
    return Case(loss, local, single, rows, [None] * W, [scale] * W, miner)


def explicit_pairs_case(seed: int) -> Case:
    """Scored pairs: the dataset's own positive and negative pairs passed as local indices."""
    case = pair_case(ContrastiveLoss(), [3, 3], with_negatives=False, seed=seed)
    scores = torch.tensor([1, 0, 1, 1, 1, 0])
    for own, inputs in zip(case.anchor_rows, case.local, strict=True):
        local_rows = torch.arange(len(own))
        positive = scores[own] == 1
        inputs["indices"] = PairIndices(local_rows[positive], local_rows[positive], local_rows[~positive], local_rows[~positive])
    all_rows = torch.arange(len(scores))
    case.single["indices"] = PairIndices(all_rows[scores == 1], all_rows[scores == 1], all_rows[scores == 0], all_rows[scores == 0])
    return case


def make_cases() -> dict[str, Case]:
    # Rank-symmetric classes: every rank has the same number of pairs, so "mean" is exact.
    same_structure = torch.tensor([0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2])
    mixed = torch.tensor([0, 1, 1, 2, 3, 0, 2, 2, 1, 3])
    return {
        "info_nce": pair_case(InfoNCELoss(), [3, 3], with_negatives=True, seed=0),
        "info_nce_no_negatives": pair_case(InfoNCELoss(temperature=0.1), [3, 3], with_negatives=False, seed=10),
        "info_nce_symmetric": pair_case(InfoNCELoss(symmetric=True), [3, 3], with_negatives=True, seed=20),
        "info_nce_symmetric_no_negatives": pair_case(InfoNCELoss(symmetric=True), [4, 4], with_negatives=False, seed=25),
        "info_nce_unequal_batches": pair_case(InfoNCELoss(), [2, 4], with_negatives=True, seed=30),
        "info_nce_labelled": labelled_pair_case(seed=40),
        "contrastive_pairs": pair_case(ContrastiveLoss(), [3, 3], with_negatives=True, seed=50),
        "contrastive_explicit_pairs": explicit_pairs_case(seed=60),
        "contrastive_labelled": labelled_case(ContrastiveLoss(margin=0.8), same_structure, seed=70, scale=1.0),
        "triplet_pairs": pair_case(TripletLoss(margin=0.5, reduction="mean"), [3, 3], with_negatives=True, seed=80),
        "triplet_labelled_sum": labelled_case(TripletLoss(margin=1.5, reduction="sum"), mixed, seed=90, scale=W),
        "triplet_miner_sum": labelled_case(
            TripletLoss(margin=1.5, reduction="sum"), mixed, seed=100, scale=W, miner=AllTripletsMiner()
        ),
        # Ranking and instance losses average over anchors: exact across devices with a ref set.
        "fast_ap_pairs": pair_case(FastAPLoss(), [3, 3], with_negatives=True, seed=110),
        "smooth_ap_pairs": pair_case(SmoothAPLoss(temperature=0.1), [3, 3], with_negatives=True, seed=120),
        "instance_unequal_batches": pair_case(InstanceLoss(gamma=8.0), [2, 4], with_negatives=True, seed=130),
        # Labelled rows: the trainer's tuples (every pair but self-comparisons) are the lists.
        "fast_ap_labelled": labelled_case(FastAPLoss(), same_structure, seed=140, scale=1.0),
        "smooth_ap_labelled": labelled_case(SmoothAPLoss(temperature=0.1), same_structure, seed=150, scale=1.0),
    }


def local_loss_and_grads(case: Case, me: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    inputs = case.local[me]
    embeddings = inputs["embeddings"].clone().requires_grad_()
    ref = inputs.get("ref_embeddings")
    ref = None if ref is None else ref.clone().requires_grad_()
    loss = compute_local_loss(
        case.loss, embeddings, inputs.get("labels"), ref, inputs.get("ref_labels"),
        indices=inputs.get("indices"), miner=case.miner,
    ) * case.scale[me]
    loss.backward()
    return loss.detach(), embeddings.grad, None if ref is None else ref.grad


def check_unequal_gather(me: int) -> dict[str, torch.Tensor]:
    """Rank 0 holds 2 rows, rank 1 holds 4: gathered rows, and the summed gradient of our own rows."""
    rows = torch.full((2 + 2 * me, 3), float(me + 1), requires_grad=True)
    gathered = all_gather_with_grad(rows)
    weights = torch.arange(6 * 3, dtype=torch.float).reshape(6, 3) * (me + 1)  # differs per rank
    (gathered * weights).sum().backward()
    labels = all_gather_no_grad(torch.arange(2 + 2 * me) + 10 * me)
    return {"gathered": gathered.detach(), "grad": rows.grad, "labels": labels,
            "info": torch.tensor([is_distributed(), world_size(), rank()])}


def small_encoder() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, DIM))


def grad_cache_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    return randn(2 * 5, 5, seed=200), randn(2 * 5, 5, seed=201)  # 5 pairs per rank


def grad_cache_gradients(me: int) -> list[torch.Tensor]:
    """GradCache whose loss gathers across ranks: mini-batches of 2 rows, local 5 pairs."""
    encoder = small_encoder()
    anchors, positives = (x[me * 5 : (me + 1) * 5] for x in grad_cache_pairs())
    chunks = [list(anchors.split(2)), list(positives.split(2))]
    loss = InfoNCELoss(symmetric=True)
    cached_backward(encoder, chunks, lambda e: compute_local_loss(loss, e[0], ref_embeddings=e[1]))
    return [p.grad for p in encoder.parameters()]


def no_ref_error(me: int) -> str:
    """Labelled rows without a ref need tuples to exclude self-comparisons: InfoNCE must refuse."""
    try:
        compute_local_loss(InfoNCELoss(), randn(4, DIM, seed=me), torch.tensor([0, 0, 1, 1]))
    except ValueError as err:
        return str(err)
    return ""


def worker(me: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=me, world_size=W)
    try:
        results = {name: local_loss_and_grads(case, me) for name, case in make_cases().items()}
        results["unequal_gather"] = check_unequal_gather(me)
        results["grad_cache"] = grad_cache_gradients(me)
        results["no_ref_error"] = no_ref_error(me)
        torch.save(results, os.path.join(folder, f"rank{me}.pt"))
        dist.barrier()  # both ranks done before either shuts gloo down (else it may abort)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    folder = tmp_path_factory.mktemp("gloo")
    mp.spawn(worker, args=(str(folder),), nprocs=W, join=True)
    return [torch.load(folder / f"rank{me}.pt") for me in range(W)]


def single_process_loss_and_grads(case: Case) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    inputs = dict(case.single)
    inputs["embeddings"] = inputs["embeddings"].clone().requires_grad_()
    if "ref_embeddings" in inputs:
        inputs["ref_embeddings"] = inputs["ref_embeddings"].clone().requires_grad_()
    loss = case.loss(**inputs)
    loss.backward()
    ref = inputs.get("ref_embeddings")
    return loss.detach(), inputs["embeddings"].grad, None if ref is None else ref.grad


@pytest.mark.parametrize("name", list(make_cases()))
def test_local_loss_matches_single_process(rank_results: list[dict], name: str) -> None:
    case = make_cases()[name]
    single_loss, single_grad, single_ref_grad = single_process_loss_and_grads(case)
    assert single_loss > 0  # a case where nothing is learned would prove nothing
    local_losses = torch.stack([rank_results[me][name][0] for me in range(W)])
    torch.testing.assert_close(local_losses.mean(), single_loss, atol=1e-5, rtol=1e-5)
    for me in range(W):
        _, grad, ref_grad = rank_results[me][name]
        # DDP averages over ranks: each rank's gradient is W times its share of the global one.
        torch.testing.assert_close(grad / W, single_grad[case.anchor_rows[me]], atol=1e-5, rtol=1e-4)
        if single_ref_grad is not None:
            torch.testing.assert_close(ref_grad / W, single_ref_grad[case.ref_rows[me]], atol=1e-5, rtol=1e-4)


def test_all_gather_with_unequal_sizes(rank_results: list[dict]) -> None:
    expected_rows = torch.cat([torch.full((2, 3), 1.0), torch.full((4, 3), 2.0)])
    # Our rows got sum over ranks of that rank's weights on them: weights * (1 + 2).
    summed_weights = torch.arange(18, dtype=torch.float).reshape(6, 3) * 3
    for me, own in enumerate([slice(0, 2), slice(2, 6)]):
        result = rank_results[me]["unequal_gather"]
        torch.testing.assert_close(result["gathered"], expected_rows)
        torch.testing.assert_close(result["grad"], summed_weights[own])
        assert result["labels"].tolist() == [0, 1, 10, 11, 12, 13]
        assert result["info"].tolist() == [1, W, me]


def test_labelled_rows_without_ref_need_a_loss_that_takes_tuples(rank_results: list[dict]) -> None:
    assert all("does not take tuples" in r["no_ref_error"] for r in rank_results)


def test_grad_cache_with_gathered_loss_matches_single_process(rank_results: list[dict]) -> None:
    encoder = small_encoder()
    anchors, positives = grad_cache_pairs()
    InfoNCELoss(symmetric=True)(encoder(anchors), ref_embeddings=encoder(positives)).backward()
    for p, *per_rank in zip(encoder.parameters(), *(r["grad_cache"] for r in rank_results), strict=True):
        # What DDP's all-reduce would hold: the mean of the ranks' gradients.
        torch.testing.assert_close(torch.stack(per_rank).mean(0), p.grad, atol=1e-5, rtol=1e-4)


def test_single_process_is_a_no_op() -> None:
    assert (is_distributed(), world_size(), rank()) == (False, 1, 0)
    anchors, positives = randn(4, DIM, seed=1), randn(6, DIM, seed=2)
    kwargs = gather_for_loss(anchors, ref_embeddings=positives)
    assert kwargs["embeddings"] is anchors and kwargs["ref_embeddings"] is positives
    assert kwargs["labels"].tolist() == [0, 1, 2, 3] and kwargs["ref_labels"].tolist() == list(range(6))
    assert all_gather_with_grad(anchors) is anchors
    loss = InfoNCELoss(symmetric=True)
    torch.testing.assert_close(compute_local_loss(loss, anchors, ref_embeddings=positives), loss(anchors, ref_embeddings=positives))


def test_single_process_runs_the_miner() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    kwargs = gather_for_loss(randn(4, DIM, seed=3), labels, miner=AllTripletsMiner())
    assert isinstance(kwargs["indices"], TripletIndices) and len(kwargs["indices"]) == 8


def test_gather_rejects_ambiguous_inputs() -> None:
    with pytest.raises(ValueError, match="needs ref_embeddings"):
        gather_for_loss(randn(4, DIM, seed=4))
    with pytest.raises(ValueError, match="either explicit indices or a miner"):
        gather_for_loss(randn(4, DIM, seed=4), torch.zeros(4), indices=all_triplets(torch.zeros(4)), miner=AllTripletsMiner())
    with pytest.raises(ValueError, match="0-dim"):
        all_gather_with_grad(torch.tensor(1.0))
