"""pytorch-metric-learning losses and miners as they are, through the textdml contract and the trainer."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from textdml.config import load_run_config
from textdml.losses.pml_adapter import PMLLossAdapter, to_pml_tuple
from textdml.miners.base import PairIndices, TripletIndices
from textdml.miners.pml_adapter import PMLMinerAdapter
from textdml.training.build import build_loss, build_miner
from textdml.training.loop import train

PML_LOSSES = [pml_losses.MultiSimilarityLoss, pml_losses.TripletMarginLoss, pml_losses.ContrastiveLoss,
              pml_losses.NTXentLoss, pml_losses.CircleLoss]
PML_MINERS = [pml_miners.MultiSimilarityMiner, pml_miners.TripletMarginMiner, pml_miners.BatchHardMiner,
              pml_miners.PairMarginMiner]


def batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(12, 8, generator=generator)
    labels = torch.arange(6).repeat_interleave(2)
    ref = torch.randn(10, 8, generator=generator)
    ref_labels = torch.arange(10) % 6
    return embeddings, labels, ref, ref_labels


@pytest.mark.parametrize("cls", PML_LOSSES, ids=lambda c: c.__name__)
def test_loss_equals_pml_called_directly(cls):
    embeddings, labels, ref, ref_labels = batch()
    adapter = PMLLossAdapter(cls())
    torch.testing.assert_close(adapter(embeddings, labels), cls()(embeddings, labels))
    torch.testing.assert_close(adapter(embeddings, labels, ref_embeddings=ref, ref_labels=ref_labels),
                               cls()(embeddings, labels, ref_emb=ref, ref_labels=ref_labels))


@pytest.mark.parametrize("miner_cls", PML_MINERS, ids=lambda c: c.__name__)
def test_miner_tuples_become_textdml_indices_and_feed_the_loss(miner_cls):
    embeddings, labels, ref, ref_labels = batch(1)
    raw = miner_cls()(embeddings, labels, ref, ref_labels)
    mined = PMLMinerAdapter(miner_cls())(embeddings, labels, ref, ref_labels)
    assert isinstance(mined, TripletIndices if len(raw) == 3 else PairIndices)
    for got, expected in zip(to_pml_tuple(mined), raw):
        torch.testing.assert_close(got, expected)
    loss = pml_losses.MultiSimilarityLoss()
    expected = loss(embeddings, labels, indices_tuple=raw, ref_emb=ref, ref_labels=ref_labels)
    got = PMLLossAdapter(loss)(embeddings, labels, ref_embeddings=ref, ref_labels=ref_labels, indices=mined)
    torch.testing.assert_close(got, expected)


def test_pair_layout_without_labels_pairs_rows_by_position():
    embeddings, _, ref, _ = batch(2)
    got = PMLLossAdapter(pml_losses.NTXentLoss())(embeddings[:6], ref_embeddings=ref[:6])
    expected = pml_losses.NTXentLoss()(embeddings[:6], torch.arange(6), ref_emb=ref[:6], ref_labels=torch.arange(6))
    torch.testing.assert_close(got, expected)


def test_gradients_flow_through_the_adapter():
    embeddings, labels, _, _ = batch(3)
    embeddings.requires_grad_(True)
    PMLLossAdapter(pml_losses.TripletMarginLoss())(embeddings, labels).backward()
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0


def test_targets_build_adapters_with_auto_arguments():
    loss = build_loss({"target": "pytorch_metric_learning.losses.ArcFaceLoss"}, embedding_size=8, num_classes=5)
    assert isinstance(loss, PMLLossAdapter) and not loss.gathers and loss.input_kinds == ("labelled",)
    assert loss.loss.W.shape == (8, 5)
    assert isinstance(build_miner({"target": "pytorch_metric_learning.miners.MultiSimilarityMiner", "epsilon": 0.2}),
                      PMLMinerAdapter)
    with pytest.raises(TypeError, match="wraps pytorch-metric-learning losses"):
        PMLLossAdapter(torch.nn.Linear(2, 2))


def labelled_dataset(rows: int = 32) -> Dataset:
    return Dataset.from_dict({"anchor": [f"text {i} of class {i % 4}" for i in range(rows)],
                              "label": [f"c{i % 4}" for i in range(rows)]})


@pytest.mark.parametrize("loss,miner", [
    ("pytorch_metric_learning.losses.MultiSimilarityLoss", "pytorch_metric_learning.miners.MultiSimilarityMiner"),
    ("pytorch_metric_learning.losses.TripletMarginLoss", None),
    ("pytorch_metric_learning.losses.ArcFaceLoss", None),
], ids=["multi_similarity+miner", "triplet", "arc_face"])
def test_pml_losses_train_from_a_recipe(loss, miner, tiny_model_dir, tmp_path):
    overrides = ["train.path=in-memory", f"model.name_or_path={tiny_model_dir}", f"training.output_dir={tmp_path}",
                 "training.batch_size=8", "training.max_steps=2", "training.show_progress_bar=false",
                 "training.sampler=m_per_class", "training.m_per_class=2", f"loss={{target: {loss}}}"]
    if miner:
        overrides.append(f"miner={{target: {miner}}}")
    result = train(load_run_config(None, overrides), train_dataset=labelled_dataset())
    assert result.global_step == 2 and (result.final_model / "modules.json").exists()
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in result.metrics if "loss" in r)
