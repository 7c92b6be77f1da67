from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from textdml.losses.base import DegenerateBatchWarning
from textdml.losses.siglip import SIGLIP_LOGIT_SCALE, SigLipLoss

W = 2


def naive_siglip(images, texts, labels=None, text_labels=None, logit_scale=SIGLIP_LOGIT_SCALE, logit_bias=-10.0):
    """Sum of -log sigmoid(+-logit) over every image-text pair, divided by the number of images."""
    if labels is None:
        labels, text_labels = torch.arange(len(images)), torch.arange(len(texts))
    total = 0.0
    for i in range(len(images)):
        for j in range(len(texts)):
            logit = math.exp(logit_scale) * F.cosine_similarity(images[i], texts[j], dim=0) + logit_bias
            sign = 1.0 if labels[i] == text_labels[j] else -1.0
            total = total - torch.log(torch.sigmoid(sign * logit))
    return total / len(images)


def pairs(n: int, m: int | None = None, dim: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=gen), torch.randn(m or n, dim, generator=gen)


def loss_and_grads(loss_fn, images, texts, *params, **kwargs):
    images, texts = images.clone().requires_grad_(), texts.clone().requires_grad_()
    value = loss_fn(images, ref_embeddings=texts, **kwargs)
    value.backward()
    return value, [images.grad, texts.grad] + [p.grad for p in params]


@pytest.mark.parametrize("extra_texts", [0, 3])
@pytest.mark.parametrize(("logit_scale", "logit_bias"), [(math.log(10.0), -10.0), (1.0, 0.5)])
def test_matches_naive_reference_by_position(extra_texts, logit_scale, logit_bias):
    images, texts = pairs(5, 5 + extra_texts)
    ours = SigLipLoss(logit_scale, logit_bias)(images, ref_embeddings=texts)
    torch.testing.assert_close(ours, naive_siglip(images, texts, None, None, logit_scale, logit_bias))


def test_duplicate_captions_are_positives():
    images, texts = pairs(4, 5)
    labels, text_labels = torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 1, 2, 3])
    ours = SigLipLoss(1.0, -1.0)(images, labels, ref_embeddings=texts, ref_labels=text_labels)
    torch.testing.assert_close(ours, naive_siglip(images, texts, labels, text_labels, 1.0, -1.0))


def test_moving_captions_closer_lowers_the_loss():
    images, noise = pairs(6)
    loss = SigLipLoss(math.log(10.0), -5.0)
    values = [loss(images, ref_embeddings=images + scale * noise).item() for scale in (2.0, 1.0, 0.2)]
    assert values[0] > values[1] > values[2]


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7])
@pytest.mark.parametrize("with_labels", [False, True])
def test_chunked_equals_plain_forward_and_backward(chunk_size, with_labels):
    images, texts = pairs(5, 7)
    labels = {"labels": torch.tensor([0, 1, 1, 2, 3]), "ref_labels": torch.tensor([0, 1, 1, 2, 3, 4, 5])}
    results = []
    for chunk in (None, chunk_size):
        params = nn.Parameter(torch.tensor(1.5)), nn.Parameter(torch.tensor(-2.0))
        loss = SigLipLoss(*params, chunk_size=chunk)
        results.append(loss_and_grads(loss, images, texts, *params, **(labels if with_labels else {})))
    (plain_value, plain_grads), (chunked_value, chunked_grads) = results
    torch.testing.assert_close(chunked_value, plain_value)
    for mine, reference in zip(chunked_grads, plain_grads):
        torch.testing.assert_close(mine, reference)


def test_shared_parameters_are_borrowed_not_owned():
    scale, bias = nn.Parameter(torch.tensor([math.log(10.0)])), nn.Parameter(torch.tensor([-10.0]))  # HF SigLIP: (1,)
    loss = SigLipLoss(scale, bias)
    assert list(loss.parameters()) == []
    images, texts = pairs(4)
    value = loss(images, ref_embeddings=texts)
    value.backward()
    assert value.shape == () and scale.grad is not None and bias.grad is not None
    own = SigLipLoss()
    assert {id(p) for group in own.parameter_groups(0.1) for p in group["params"]} == {id(own.logit_scale), id(own.logit_bias)}


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_gradcheck(chunk_size):
    images, texts = (t.double().requires_grad_() for t in pairs(4, 5, dim=3))
    scale = nn.Parameter(torch.tensor(1.2, dtype=torch.float64))
    bias = nn.Parameter(torch.tensor(-0.5, dtype=torch.float64))
    labels, text_labels = torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 1, 2, 3])
    assert torch.autograd.gradcheck(
        lambda i, t, s, b: SigLipLoss(s, b, chunk_size=chunk_size)(i, labels, ref_embeddings=t, ref_labels=text_labels),
        (images, texts, scale, bias),
    )


def test_one_pair_still_trains_and_empty_batch_warns():
    images, texts = (t.requires_grad_() for t in pairs(1))
    value = SigLipLoss()(images, ref_embeddings=texts)
    value.backward()
    assert value.item() > 0 and torch.isfinite(images.grad).all()
    with pytest.warns(DegenerateBatchWarning):
        empty = SigLipLoss()(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), ref_embeddings=torch.randn(2, 3),
                             ref_labels=torch.arange(2))
    assert empty.item() == 0.0


def test_identical_embeddings_are_finite():
    images = torch.ones(4, 3, requires_grad=True)
    value = SigLipLoss()(images, ref_embeddings=torch.ones(4, 3))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(images.grad).all()


def test_needs_the_text_tower():
    with pytest.raises(ValueError, match="ref_embeddings"):
        SigLipLoss()(torch.randn(4, 3), torch.arange(4))


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_parity_with_open_clip(chunk_size):
    open_clip = pytest.importorskip("open_clip")
    images, texts = pairs(6, dim=8)
    ours_params = nn.Parameter(torch.tensor(2.0)), nn.Parameter(torch.tensor(-3.0))
    theirs_params = nn.Parameter(torch.tensor(2.0)), nn.Parameter(torch.tensor(-3.0))
    ours = loss_and_grads(SigLipLoss(*ours_params, chunk_size=chunk_size), images, texts, *ours_params)
    # open_clip takes normalised features and the multiplier itself (its model applies exp).
    reference = open_clip.loss.SigLipLoss()
    theirs = loss_and_grads(
        lambda i, ref_embeddings: reference(F.normalize(i, dim=-1), F.normalize(ref_embeddings, dim=-1),
                                            theirs_params[0].exp(), theirs_params[1]),
        images, texts, *theirs_params,
    )
    torch.testing.assert_close(ours[0], theirs[0])
    for mine, ref in zip(ours[1], theirs[1]):
        torch.testing.assert_close(mine, ref)


# ---------------------------------------------------------------- gather=True across 2 gloo processes
def gathered_worker(me: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=me, world_size=W)
    try:
        images, texts = pairs(4 * W, dim=5, seed=3)
        own = slice(4 * me, 4 * me + 4)
        scale, bias = nn.Parameter(torch.tensor(1.5)), nn.Parameter(torch.tensor(-2.0))
        loss = SigLipLoss(scale, bias, chunk_size=4, gather=True)
        value, grads = loss_and_grads(loss, images[own], texts[own], scale, bias)
        torch.save({"value": value.detach(), "grads": grads, "gathers": loss.gathers}, f"{folder}/rank{me}.pt")
        dist.barrier()  # both ranks done before either shuts gloo down (else it may abort)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def gathered_results(tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("siglip_gather")
    mp.spawn(gathered_worker, args=(str(folder),), nprocs=W, join=True)
    return [torch.load(folder / f"rank{r}.pt") for r in range(W)]


def test_gather_matches_single_process(gathered_results):
    """Each rank: its images against every rank's texts. DDP averages parameter gradients over
    ranks, so ``mean of local losses`` and ``local grads / W`` must equal the single-process ones."""
    images, texts = pairs(4 * W, dim=5, seed=3)
    scale, bias = nn.Parameter(torch.tensor(1.5)), nn.Parameter(torch.tensor(-2.0))
    value, (image_grad, text_grad, scale_grad, bias_grad) = loss_and_grads(SigLipLoss(scale, bias), images, texts, scale, bias)
    assert not gathered_results[0]["gathers"]
    torch.testing.assert_close(torch.stack([r["value"] for r in gathered_results]).mean(), value)
    for me, result in enumerate(gathered_results):
        own = slice(4 * me, 4 * me + 4)
        torch.testing.assert_close(result["grads"][0] / W, image_grad[own])
        torch.testing.assert_close(result["grads"][1] / W, text_grad[own])
    torch.testing.assert_close(sum(r["grads"][2] for r in gathered_results) / W, scale_grad)
    torch.testing.assert_close(sum(r["grads"][3] for r in gathered_results) / W, bias_grad)
