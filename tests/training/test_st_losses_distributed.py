"""CoSENT (whole-batch ranking), GISTEmbed (guided in-batch negatives) and contrastive tension
(symmetric in-batch negatives) on 2 gloo processes vs one process on the concatenated batch."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from textdml.distributed import compute_local_loss
from textdml.losses.contrastive_tension import ContrastiveTensionLoss
from textdml.losses.cosent import CoSENTLoss
from textdml.losses.gist_embed import GISTEmbedLoss
from textdml.training.scores import scored_pairs_loss
from textdml.training.teacher import gathered_guided_loss

W, N, D, GD = 2, 4, 6, 5  # ranks, pairs per rank, student and guide sizes


def inputs() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    total = W * N
    return {"a": torch.randn(total, D, generator=gen), "p": torch.randn(total, D, generator=gen),
            "n": torch.randn(total, D, generator=gen), "ga": torch.randn(total, GD, generator=gen),
            "gp": torch.randn(total, GD, generator=gen), "gn": torch.randn(total, GD, generator=gen),
            "scores": torch.rand(total, generator=gen)}


def gist() -> GISTEmbedLoss:
    # Every block spans the devices (sentence-transformers keeps the anchor-anchor block per device).
    return GISTEmbedLoss(temperature=0.1, margin=0.05)


def worker(me: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=me, world_size=W)
    try:
        x = {k: v[me * N:(me + 1) * N].clone() for k, v in inputs().items()}
        results = {}
        a, p = x["a"].clone().requires_grad_(), x["p"].clone().requires_grad_()
        value = scored_pairs_loss(CoSENTLoss(scale=5.0), a, p, x["scores"])
        value.backward()
        results["cosent"] = (value.detach(), a.grad, p.grad)
        a, p, n = (x[k].clone().requires_grad_() for k in ("a", "p", "n"))
        value = gathered_guided_loss(gist(), [a, p, n], [x["ga"], x["gp"], x["gn"]], None, None)
        value.backward()
        results["gist"] = (value.detach(), a.grad, p.grad, n.grad)
        twin, model = x["a"].clone().requires_grad_(), x["p"].clone().requires_grad_()
        labels = torch.arange(N) + me * N
        value = compute_local_loss(ContrastiveTensionLoss(learn_scale=False), twin, labels, model, labels)
        value.backward()
        results["tension"] = (value.detach(), twin.grad, model.grad)
        torch.save(results, os.path.join(folder, f"rank{me}.pt"))
        dist.barrier()  # both ranks done before either shuts gloo down (else it may abort)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("gloo_st")
    mp.spawn(worker, args=(str(folder),), nprocs=W, join=True)
    return [torch.load(folder / f"rank{me}.pt") for me in range(W)]


def rows(me: int) -> slice:
    return slice(me * N, (me + 1) * N)


def test_cosent_across_devices_equals_one_process(rank_results):
    x = inputs()
    a, p = x["a"].clone().requires_grad_(), x["p"].clone().requires_grad_()
    single = CoSENTLoss(scale=5.0)(a, x["scores"], ref_embeddings=p)
    single.backward()
    for me in range(W):
        value, grad_a, grad_p = rank_results[me]["cosent"]
        torch.testing.assert_close(value, single.detach())  # every device computes the whole batch's loss
        # DDP averages over devices: each device's gradient is W times its rows' share.
        torch.testing.assert_close(grad_a / W, a.grad[rows(me)], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(grad_p / W, p.grad[rows(me)], rtol=1e-4, atol=1e-6)


def test_gist_across_devices_equals_one_process(rank_results):
    x = inputs()
    a, p, n = (x[k].clone().requires_grad_() for k in ("a", "p", "n"))
    single = gist()(a, ref_embeddings=torch.cat([p, n]), teacher_embeddings=x["ga"],
                    teacher_ref_embeddings=torch.cat([x["gp"], x["gn"]]))
    single.backward()
    local = torch.stack([rank_results[me]["gist"][0] for me in range(W)])
    torch.testing.assert_close(local.mean(), single.detach())
    for me in range(W):
        _, grad_a, grad_p, grad_n = rank_results[me]["gist"]
        torch.testing.assert_close(grad_a / W, a.grad[rows(me)], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(grad_p / W, p.grad[rows(me)], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(grad_n / W, n.grad[rows(me)], rtol=1e-4, atol=1e-6)


def test_contrastive_tension_across_devices_equals_one_process(rank_results):
    x = inputs()
    twin, model = x["a"].clone().requires_grad_(), x["p"].clone().requires_grad_()
    labels = torch.arange(W * N)
    single = ContrastiveTensionLoss(learn_scale=False)(twin, labels, ref_embeddings=model, ref_labels=labels)
    single.backward()
    local = torch.stack([rank_results[me]["tension"][0] for me in range(W)])
    torch.testing.assert_close(local.mean(), single.detach())
    for me in range(W):
        _, grad_twin, grad_model = rank_results[me]["tension"]
        torch.testing.assert_close(grad_twin / W, twin.grad[rows(me)], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(grad_model / W, model.grad[rows(me)], rtol=1e-4, atol=1e-6)
