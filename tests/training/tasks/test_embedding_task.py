"""Fast paths of the task against the plain path, forward and backward."""

from __future__ import annotations

import copy

import pytest
import torch

from textdml.data.collator import RoleCollator
from textdml.data.roles import resolve_roles
from textdml.losses import ContrastiveLoss, InfoNCELoss, TripletLoss
from textdml.miners import BatchHardMiner
from textdml.training.tasks import EmbeddingTask

ROWS = [
    {"anchor": f"question {i} " + "word " * (i % 7), "positive": f"answer {i} " + "longer text " * (i % 5),
     "negative": f"wrong {i} " + "x " * (i % 3), "label": i % 3}
    for i in range(10)
]


def collate(embedder, columns, loss_name, bucket_rows=None, label_ids=None):
    roles = resolve_roles(columns, loss_name, ("pairs", "triplets", "scored_pairs", "labelled"))
    rows = [{c: row[c] for c in columns} for row in ROWS]
    return RoleCollator(embedder, roles, label_ids, bucket_rows=bucket_rows)(rows)


def loss_and_grads(task, batch, cached_mini_batch=None):
    task.zero_grad()
    torch.manual_seed(0)
    if cached_mini_batch:
        loss = task.cached_step(batch, cached_mini_batch).loss
    else:
        loss = task(batch).loss
        loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in task.named_parameters() if p.grad is not None}


def assert_same(a, b, atol=1e-5):
    torch.testing.assert_close(a[0], b[0], atol=atol, rtol=1e-4)
    assert a[1].keys() == b[1].keys()
    for name in a[1]:
        torch.testing.assert_close(a[1][name], b[1][name], atol=atol, rtol=1e-3, msg=name)


CASES = [
    (["anchor", "positive"], "info_nce", lambda: InfoNCELoss(), None),
    (["anchor", "positive", "negative"], "triplet", lambda: TripletLoss(margin=0.3), None),
    (["anchor", "label"], "contrastive", lambda: ContrastiveLoss(), None),
    (["anchor", "label"], "triplet", lambda: TripletLoss(margin=0.3), BatchHardMiner),
]


@pytest.mark.parametrize(("columns", "name", "make_loss", "miner"), CASES, ids=[c[1] + str(len(c[0])) for c in CASES])
def test_length_buckets_match_padding_per_role(tiny_embedder, columns, name, make_loss, miner):
    tiny_embedder.eval()  # dropout off: the two paths pad differently, so dropout masks differ
    task = EmbeddingTask(tiny_embedder, make_loss(), miner() if miner else None)
    labels = {0: 0, 1: 1, 2: 2}
    plain = loss_and_grads(task, collate(tiny_embedder, columns, name, None, labels))
    bucketed = loss_and_grads(task, collate(tiny_embedder, columns, name, 4, labels))
    assert_same(plain, bucketed)


@pytest.mark.parametrize("mini_batch", [3, 7])
@pytest.mark.parametrize("bucket_rows", [None, 8])
def test_grad_cache_matches_plain_with_dropout(tiny_embedder, mini_batch, bucket_rows):
    tiny_embedder.train()
    task = EmbeddingTask(tiny_embedder, InfoNCELoss(symmetric=True))
    batch = collate(tiny_embedder, ["anchor", "positive", "negative"], "info_nce", bucket_rows)
    # The plain reference embeds the same mini-batches in the same order, so dropout draws match.
    reference = copy.deepcopy(task)
    cached = loss_and_grads(task, batch, cached_mini_batch=mini_batch)
    plain = plain_chunked(reference, batch, mini_batch)
    assert_same(cached, plain)


def plain_chunked(task, batch, mini_batch):
    from textdml.training.grad_cache import split_features

    task.zero_grad()
    torch.manual_seed(0)
    chunks = [m for block in batch["inputs"].blocks for m in split_features(block, mini_batch)]
    embeddings = torch.cat([task(features=c) for c in chunks])
    loss = task.loss_from_embeddings(batch, embeddings)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in task.named_parameters() if p.grad is not None}


def test_scored_pairs_use_only_the_explicit_pairs(tiny_embedder):
    tiny_embedder.eval()
    rows = [{"anchor": r["anchor"], "positive": r["positive"], "label": i % 2} for i, r in enumerate(ROWS)]
    roles = resolve_roles(["anchor", "positive", "label"], "contrastive", ("scored_pairs",))
    batch = RoleCollator(tiny_embedder, roles)(rows)
    task = EmbeddingTask(tiny_embedder, ContrastiveLoss(margin=0.5))
    loss = task(batch).loss
    anchors = tiny_embedder(tiny_embedder.tokenize([r["anchor"] for r in rows]))
    others = tiny_embedder(tiny_embedder.tokenize([r["positive"] for r in rows]))
    dist = 1 - torch.nn.functional.cosine_similarity(anchors, others)
    y = torch.tensor([r["label"] for r in rows], dtype=torch.float)
    expected = (y * dist**2 + (1 - y) * (0.5 - dist).clamp_min(0) ** 2).mean()
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-4)
