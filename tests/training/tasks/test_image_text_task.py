"""The image-text task: GradCache equals the plain path; labelled images train with catalogue losses."""

from __future__ import annotations

import copy
import json

import pytest
import torch

open_clip = pytest.importorskip("open_clip")

from tests.fakes_vision import write_colour_images  # noqa: E402
from textdml.data.image_collator import ImageTextCollator  # noqa: E402
from textdml.data.images import resolve_image_roles  # noqa: E402
from textdml.losses import ClipLoss, TripletLoss  # noqa: E402
from textdml.miners import BatchHardMiner  # noqa: E402
from textdml.models.dual_encoder import create_dual_encoder  # noqa: E402
from textdml.training.tasks.image_text import ImageTextTask  # noqa: E402

ARCH = "textdml-tiny-task-clip"


@pytest.fixture(scope="module")
def model_config(tmp_path_factory):
    config = {"embed_dim": 16,
              "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    path = tmp_path_factory.mktemp("configs") / f"{ARCH}.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    return {"kind": "open_clip", "arch": ARCH, "pretrained": None}


def batch_for(model, rows, columns):
    roles = resolve_image_roles(columns, "loss", ("image_text", "labelled"))
    label_ids = {c: i for i, c in enumerate(sorted({r["label"] for r in rows}))}
    return ImageTextCollator(model, roles, label_ids)([{c: r[c] for c in columns} for r in rows])


def grads(task, run):
    task.zero_grad()
    loss = run()
    return loss.detach(), {n: p.grad.clone() for n, p in task.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("mini_batch", [3, 5])
def test_grad_cache_matches_the_plain_step(model_config, tmp_path, mini_batch):
    torch.manual_seed(0)
    model = create_dual_encoder(model_config)
    model.eval()  # no dropout in this tiny config anyway; keeps the comparison exact
    task = ImageTextTask(model, ClipLoss(logit_scale=model.logit_scale))
    batch = batch_for(model, write_colour_images(tmp_path, per_colour=3), ["image", "text"])

    def plain():
        loss = task(batch).loss
        loss.backward()
        return loss

    reference = grads(task, plain)
    cached = grads(task, lambda: task.cached_step(batch, mini_batch).loss)
    torch.testing.assert_close(cached[0], reference[0], atol=1e-5, rtol=1e-4)
    assert cached[1].keys() == reference[1].keys() and "embedder.logit_scale" in cached[1]
    for name in reference[1]:
        torch.testing.assert_close(cached[1][name], reference[1][name], atol=1e-5, rtol=1e-3, msg=name)


def test_labelled_images_with_a_catalogue_loss_and_miner(model_config, tmp_path):
    model = create_dual_encoder(model_config)
    # Solid colours are easy; a margin above any normalised distance keeps every triplet active.
    task = ImageTextTask(copy.deepcopy(model), TripletLoss(margin=3.0), BatchHardMiner())
    batch = batch_for(task.embedder, write_colour_images(tmp_path, per_colour=3), ["image", "label"])
    output = task(batch)
    output.loss.backward()
    assert output.num_examples == 12 and torch.isfinite(output.loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in task.embedder.image_tower.parameters())
