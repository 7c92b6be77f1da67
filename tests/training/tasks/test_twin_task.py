"""Contrastive tension through the task: a trained twin of the model, never saved."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from textdml.config import load_run_config
from textdml.data.collator import RoleCollator
from textdml.data.roles import resolve_roles
from textdml.losses.contrastive_tension import ContrastiveTensionLoss
from textdml.models import Embedder
from textdml.training.loop import train
from textdml.training.tasks import EmbeddingTask

SENTENCES = [{"anchor": f"plain sentence number {i}"} for i in range(6)]


def test_plain_sentences_are_their_own_kind_only_for_losses_that_take_them():
    assert resolve_roles(["anchor"], "contrastive_tension", ("texts",)).kind == "texts"
    with pytest.raises(ValueError, match="no column for role 'positive' or 'label'"):
        resolve_roles(["anchor"], "info_nce", ("pairs", "triplets"))


def test_the_twin_is_trained_but_not_part_of_the_model(tiny_model_dir):
    embedder = Embedder.from_pretrained(tiny_model_dir)
    task = EmbeddingTask(embedder, ContrastiveTensionLoss())
    assert task.twin is not None and task.twin is not embedder
    batch = RoleCollator(embedder, resolve_roles(["anchor"], "ct", ("texts",)))(SENTENCES)
    task(batch).loss.backward()
    assert any(p.grad is not None for p in task.twin.parameters())
    assert any(p.grad is not None for p in embedder.parameters())
    assert task.loss.logit_scale.grad is not None
    with pytest.raises(ValueError, match="grad_cache=false"):
        task.cached_step(batch, mini_batch_size=2)


def test_equal_copies_in_eval_mode_give_the_loss_of_identical_views(tiny_model_dir):
    embedder = Embedder.from_pretrained(tiny_model_dir).eval()
    task = EmbeddingTask(embedder, ContrastiveTensionLoss()).eval()
    batch = RoleCollator(embedder, resolve_roles(["anchor"], "ct", ("texts",)))(SENTENCES)
    rows = embedder(embedder.tokenize([r["anchor"] for r in SENTENCES]))
    labels = batch["labels"]
    expected = ContrastiveTensionLoss()(rows, labels, ref_embeddings=rows, ref_labels=labels)
    torch.testing.assert_close(task(batch).loss, expected, rtol=1e-4, atol=1e-5)


def test_two_training_steps_save_only_the_model(tiny_model_dir, tmp_path):
    dataset = Dataset.from_list([{"text": f"an unlabelled sentence {i} " + "word " * (i % 3)} for i in range(16)])
    config = load_run_config(None, ["train.path=in-memory", f"model.name_or_path={tiny_model_dir}",
                                    f"training.output_dir={tmp_path / 'run'}", "training.batch_size=8",
                                    "training.max_steps=2", "training.show_progress_bar=false",
                                    "loss.name=contrastive_tension", "train.columns={anchor: text}"])
    result = train(config, train_dataset=dataset)
    assert result.global_step == 2
    saved = Embedder.from_pretrained(result.final_model)
    assert sum(p.numel() for p in saved.parameters()) == sum(p.numel() for p in Embedder.from_pretrained(
        tiny_model_dir).parameters())
