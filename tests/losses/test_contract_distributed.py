"""The contract across devices: every gathering loss, on 2 gloo processes, equals one process.

Each rank holds 3 pairs (anchors and positives paired by position) and backpropagates its local
loss (its anchors against every rank's positives, see ``textdml.distributed``). DDP averages
gradients over ranks, so the parity is ``local grad / W == single-process grad`` on each rank's
rows, and the mean of the local losses equals the single-process loss. One spawn runs every loss.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from loss_contract import DIM, LossCase, all_cases, randn

from textdml.distributed import compute_local_loss

W, PAIRS_PER_RANK = 2, 3
GATHERING = [case for case in all_cases() if case.generic and case.extra is None and case.layout != "scored"
             and case.exact_across_devices and getattr(case.build(), "gathers", False)]


def pairs() -> tuple[torch.Tensor, torch.Tensor]:
    anchors = randn(W * PAIRS_PER_RANK, DIM, seed=11)
    return anchors, anchors + 0.7 * randn(W * PAIRS_PER_RANK, DIM, seed=12)


def build(case: LossCase) -> torch.nn.Module:
    torch.manual_seed(0)  # the same parameters (logit scale, ...) on every rank and in the single run
    return case.build(**case.mean_kwargs)


def worker(me: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=me, world_size=W)
    try:
        anchors, positives = pairs()
        own = slice(me * PAIRS_PER_RANK, (me + 1) * PAIRS_PER_RANK)
        results = {}
        for case in GATHERING:
            x, ref = anchors[own].clone().requires_grad_(), positives[own].clone().requires_grad_()
            loss = compute_local_loss(build(case), x, ref_embeddings=ref)
            loss.backward()
            results[case.name] = (loss.detach(), x.grad, ref.grad)
        torch.save(results, os.path.join(folder, f"rank{me}.pt"))
        dist.barrier()  # both ranks done before either shuts gloo down (else it may abort)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    folder = tmp_path_factory.mktemp("gloo")
    mp.spawn(worker, args=(str(folder),), nprocs=W, join=True)
    return [torch.load(folder / f"rank{me}.pt") for me in range(W)]


@pytest.mark.parametrize("case", GATHERING, ids=[case.name for case in GATHERING])
def test_gathered_loss_matches_one_process(rank_results: list[dict], case: LossCase) -> None:
    anchors, positives = (t.clone().requires_grad_() for t in pairs())
    single = build(case)(anchors, ref_embeddings=positives)
    single.backward()
    assert single > 0  # a case where nothing is learned would prove nothing
    torch.testing.assert_close(torch.stack([r[case.name][0] for r in rank_results]).mean(), single.detach(),
                               atol=1e-5, rtol=1e-5)
    for me, result in enumerate(rank_results):
        own = slice(me * PAIRS_PER_RANK, (me + 1) * PAIRS_PER_RANK)
        _, grad, ref_grad = result[case.name]
        torch.testing.assert_close(grad / W, anchors.grad[own], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ref_grad / W, positives.grad[own], atol=1e-5, rtol=1e-4)
