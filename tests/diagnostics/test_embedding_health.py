from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from textdml.diagnostics.health import BatchEmbeddings, HealthMonitor, embedding_health, uniformity
from textdml.losses.triplet import TripletLoss
from textdml.miners.batch_hard import BatchHardMiner


def test_alignment_uniformity_and_similarities_match_a_naive_loop():
    torch.manual_seed(0)
    anchors, refs = torch.randn(6, 5), torch.randn(6, 5)
    labels = torch.arange(6)
    health = embedding_health(BatchEmbeddings(anchors, labels, refs, labels.clone()))
    a, r = F.normalize(anchors, dim=-1), F.normalize(refs, dim=-1)
    alignment = sum(float((a[i] - r[i]).pow(2).sum()) for i in range(6)) / 6
    pos = sum(float(a[i] @ r[i]) for i in range(6)) / 6
    neg = sum(float(a[i] @ r[j]) for i in range(6) for j in range(6) if i != j) / 30
    rows = torch.cat([a, r])
    pairs = [float(torch.exp(-2 * (rows[i] - rows[j]).pow(2).sum())) for i in range(12) for j in range(i + 1, 12)]
    assert health["alignment"] == pytest.approx(alignment, abs=1e-5)
    assert health["pos_sim"] == pytest.approx(pos, abs=1e-5)
    assert health["neg_sim"] == pytest.approx(neg, abs=1e-5)
    assert health["sim_gap"] == pytest.approx(pos - neg, abs=1e-5)
    assert health["uniformity"] == pytest.approx(torch.tensor(pairs).mean().log().item(), abs=1e-5)


def test_variance_is_about_one_when_spread_and_zero_when_collapsed():
    torch.manual_seed(0)
    spread = embedding_health(BatchEmbeddings(torch.randn(256, 16), torch.arange(256)))
    collapsed = embedding_health(BatchEmbeddings(torch.ones(64, 16) + 1e-6 * torch.randn(64, 16), torch.arange(64)))
    assert 0.8 < spread["variance"] < 1.2
    assert collapsed["variance"] < 1e-6
    assert uniformity(F.normalize(torch.ones(4, 3), dim=-1)) == pytest.approx(0.0, abs=1e-6)


def test_margin_met_matches_a_naive_triplet_loop_and_mined_share_counts_tuples():
    torch.manual_seed(1)
    embeddings, labels = torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss = TripletLoss(margin=0.3)
    health = embedding_health(BatchEmbeddings(embeddings, labels), loss, BatchHardMiner())
    unit = F.normalize(embeddings, dim=-1)
    dist = torch.cdist(unit, unit)
    met = [float(dist[a, p] - dist[a, n] + 0.3 <= 0) for a in range(8) for p in range(8) for n in range(8)
           if a != p and labels[a] == labels[p] and labels[a] != labels[n]]
    assert health["margin_met"] == pytest.approx(sum(met) / len(met), abs=1e-5)
    # Batch-hard keeps one triplet per anchor out of the 1 x 6 = 6 each anchor has.
    assert health["mined"] == pytest.approx(8 / 48, abs=1e-5)


def test_in_batch_top1_is_one_when_each_anchor_is_closest_to_its_positive():
    x = torch.eye(4)
    health = embedding_health(BatchEmbeddings(x, torch.arange(4), x + 0.01, torch.arange(4)))
    assert health["top1"] == 1.0 and health["pos_sim"] > 0.99 and health["neg_sim"] < 0.05


class ConstantEmbedder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(3))

    def forward(self, features):
        return self.weight.expand(len(features["input_ids"]), 3)


def test_monitor_warns_once_with_the_step_on_collapse_and_restores_train_mode(caplog):
    from textdml.data.collator import TokenizedRoles
    from textdml.losses.info_nce import InfoNCELoss
    from textdml.training.task import EmbeddingTask

    task = EmbeddingTask(ConstantEmbedder(), InfoNCELoss())
    task.train()
    batch = {"inputs": TokenizedRoles([{"input_ids": torch.zeros(8, 2)}], [4, 4]), "labels": torch.arange(4),
             "ref_labels": torch.arange(4)}
    monitor = HealthMonitor(task)
    with caplog.at_level(logging.WARNING, logger="textdml.diagnostics.health"):
        first = monitor.measure(batch, step=7, grad_norm=torch.tensor(2.5))
        monitor.measure(batch, step=8)
    assert first["health_variance"] < 1e-3 and first["health_grad_norm"] == 2.5
    assert [r.message.count("step 7") for r in caplog.records] == [1]
    assert task.embedder.training


def test_margin_met_for_the_contrastive_loss_counts_pairs():
    from textdml.losses.contrastive import ContrastiveLoss

    x = torch.eye(4)
    # Cosine distances: 0 for each positive (itself + 0), 1 for every negative: all margins of 0.5 met.
    health = embedding_health(BatchEmbeddings(x, torch.arange(4), x.clone(), torch.arange(4)),
                              ContrastiveLoss(margin=0.5))
    assert health["margin_met"] == 1.0
    strict = embedding_health(BatchEmbeddings(x, torch.arange(4), x.clone(), torch.arange(4)),
                              ContrastiveLoss(margin=1.5))
    assert strict["margin_met"] == pytest.approx(4 / 16)  # only the positives
