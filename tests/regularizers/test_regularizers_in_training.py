"""Regularized losses inside the training task: the plain and the cached (GradCache) step agree."""

from __future__ import annotations

import pytest
import torch

from textdml.data.collator import RoleCollator
from textdml.data.roles import resolve_roles
from textdml.losses import ArcFaceLoss, ContrastiveLoss, VICRegLoss
from textdml.regularizers import LpRegularizer, RegularFaceRegularizer, ZeroMeanRegularizer
from textdml.training.task import EmbeddingTask

ROWS = [{"anchor": f"question {i} " + "word " * (i % 5), "positive": f"answer {i}", "label": i % 3} for i in range(8)]


def batch_for(embedder, columns, loss_name):
    roles = resolve_roles(columns, loss_name, ("pairs", "labelled"))
    label_ids = {0: 0, 1: 1, 2: 2} if "label" in columns else None
    return RoleCollator(embedder, roles, label_ids)([{c: row[c] for c in columns} for row in ROWS])


def step(task, batch, cached=None):
    task.zero_grad()
    if cached:
        value = task.cached_step(batch, cached).loss
    else:
        value = task(batch).loss
        value.backward()
    return value.detach(), {n: p.grad.clone() for n, p in task.named_parameters() if p.grad is not None}


CASES = {
    "arc_face": (["anchor", "label"], lambda d: ArcFaceLoss(3, d, weight_regularizer=RegularFaceRegularizer(weight=0.5),
                                                            embedding_regularizer=LpRegularizer(weight=0.1))),
    "contrastive": (["anchor", "label"], lambda d: ContrastiveLoss(embedding_regularizer=ZeroMeanRegularizer())),
    "vicreg": (["anchor", "positive"], lambda d: VICRegLoss()),
}


@pytest.mark.parametrize("name", CASES)
def test_plain_and_cached_steps_agree(tiny_embedder, name):
    tiny_embedder.eval()  # no dropout: both steps see the same embeddings
    columns, make_loss = CASES[name]
    torch.manual_seed(0)
    loss = make_loss(tiny_embedder.embedding_dim)
    task = EmbeddingTask(tiny_embedder, loss, None)
    batch = batch_for(tiny_embedder, columns, name)
    plain, cached = step(task, batch), step(task, batch, cached=3)
    assert torch.isfinite(plain[0])
    torch.testing.assert_close(plain[0], cached[0], atol=1e-5, rtol=1e-4)
    assert plain[1].keys() == cached[1].keys()
    for key in plain[1]:
        torch.testing.assert_close(plain[1][key], cached[1][key], atol=1e-5, rtol=1e-3, msg=key)
    if name == "arc_face":
        assert "loss.weight" in plain[1]  # the class weights train, the regularizer's term included
