"""Each row of the README's "Coming from sentence-transformers" table, checked against sentence-transformers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers import losses as st_losses

from textdml import Embedder, Trainer, TrainingConfig
from textdml.data.collator import RoleCollator
from textdml.data.roles import resolve_roles
from textdml.losses import InfoNCELoss
from textdml.training.task import EmbeddingTask

ANCHORS = [f"question {i} about {w}" for i, w in enumerate("cats dogs bread rivers stars rain music glass".split())]
POSITIVES = [f"an answer on {w}, number {i}" for i, w in enumerate("felines hounds baking water sky clouds songs sand".split())]


@pytest.fixture
def st_folder(tiny_model_dir, tmp_path):
    """A tiny model saved by textdml (mean pooling + normalisation), loadable by both libraries."""
    Embedder.from_pretrained(tiny_model_dir, normalize=True).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_sentence_transformer_to_embedder_from_pretrained(minilm_path, tmp_path):
    texts = ["a cat sat on the mat", "stock prices fell"]
    embedder = Embedder.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")  # offline: the packaged copy
    expected = SentenceTransformer(str(minilm_path), device="cpu").encode(texts)
    np.testing.assert_allclose(embedder.encode(texts), expected, atol=1e-5)
    embedder.save_pretrained(tmp_path / "saved")
    np.testing.assert_allclose(SentenceTransformer(str(tmp_path / "saved"), device="cpu").encode(texts), expected,
                               atol=1e-5)


def test_training_arguments_to_training_config(tiny_model_dir, tmp_path):
    fields = {f.name for f in dataclasses.fields(TrainingConfig)}
    assert {"output_dir", "batch_size", "learning_rate", "max_steps", "eval_steps", "save_steps",
            "resume_from_checkpoint"} <= fields
    data = Dataset.from_dict({"anchor": ANCHORS * 2, "positive": POSITIVES * 2})  # duplicates: no_duplicates works
    args = TrainingConfig(output_dir=str(tmp_path), batch_size=4, max_steps=2, save_steps=1, sampler="no_duplicates",
                          show_progress_bar=False)
    result = Trainer(Embedder.from_pretrained(tiny_model_dir), InfoNCELoss(), data, args=args).train()
    assert result.global_step == 2 and (tmp_path / "checkpoints" / "checkpoint-2").exists()


def st_features(model: SentenceTransformer) -> list[dict[str, torch.Tensor]]:
    return [model.tokenize(ANCHORS), model.tokenize(POSITIVES)]


@pytest.mark.parametrize("symmetric", [False, True])
def test_multiple_negatives_ranking_loss_to_info_nce(st_folder, symmetric):
    st_model = SentenceTransformer(str(st_folder), device="cpu").eval()
    st_cls = st_losses.MultipleNegativesSymmetricRankingLoss if symmetric else st_losses.MultipleNegativesRankingLoss
    with torch.no_grad():
        theirs = st_cls(st_model, scale=20.0)(st_features(st_model), None)
    embedder = Embedder.from_pretrained(st_folder)
    anchors = embedder.encode(ANCHORS, convert_to_tensor=True)
    positives = embedder.encode(POSITIVES, convert_to_tensor=True)
    ours = InfoNCELoss(temperature=0.05, symmetric=symmetric)(anchors, ref_embeddings=positives)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_cached_multiple_negatives_ranking_loss_to_grad_cache(st_folder):
    # The same loss and the same gradients as CachedMNRL, through the trainer's GradCache step.
    st_model = SentenceTransformer(str(st_folder), device="cpu").eval()
    theirs = st_losses.CachedMultipleNegativesRankingLoss(st_model, scale=20.0, mini_batch_size=3)(
        st_features(st_model), None)
    theirs.backward()
    # ST names the encoder "0.model." (older versions "0.auto_model."); textdml "transformer.".
    st_grads = {name.split(".", 2)[2]: p.grad for name, p in st_model.named_parameters() if p.grad is not None}

    embedder = Embedder.from_pretrained(st_folder).eval()
    task = EmbeddingTask(embedder, InfoNCELoss(temperature=0.05))
    roles = resolve_roles(["anchor", "positive"], "info_nce", ("pairs",), {})
    batch = RoleCollator(embedder, roles)([{"anchor": a, "positive": p} for a, p in zip(ANCHORS, POSITIVES)])
    ours = task.cached_step(batch, mini_batch_size=3).loss
    torch.testing.assert_close(ours, theirs.detach(), atol=1e-5, rtol=1e-5)
    our_grads = {name.removeprefix("transformer."): p.grad for name, p in embedder.named_parameters()
                 if p.grad is not None}
    assert our_grads.keys() == st_grads.keys()
    for name, grad in st_grads.items():
        torch.testing.assert_close(our_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_encode_arguments_and_similarity_match(st_folder):
    st_model = SentenceTransformer(str(st_folder), device="cpu")
    embedder = Embedder.from_pretrained(st_folder)
    theirs = st_model.encode(ANCHORS, convert_to_tensor=True, normalize_embeddings=True)
    ours = embedder.encode(ANCHORS, convert_to_tensor=True, normalize_embeddings=True)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert embedder.similarity_fn_name == st_model.similarity_fn_name == "cosine"
    torch.testing.assert_close(embedder.similarity(ours, ours[:3]), st_model.similarity(theirs, theirs[:3]),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(embedder.encode(ANCHORS, truncate_dim=8, convert_to_tensor=True),
                               st_model.encode(ANCHORS, truncate_dim=8, convert_to_tensor=True), atol=1e-5, rtol=1e-5)


def test_save_pretrained_is_the_sentence_transformers_layout(st_folder):
    assert (st_folder / "modules.json").exists() and (st_folder / "config_sentence_transformers.json").exists()
    st_model = SentenceTransformer(str(st_folder), device="cpu")
    np.testing.assert_allclose(st_model.encode(POSITIVES), Embedder.from_pretrained(st_folder).encode(POSITIVES),
                               atol=1e-5)


def test_push_to_hub_uploads_the_saved_folder(tiny_embedder, monkeypatch):
    import huggingface_hub

    calls = {}

    def create_repo(repo_id, **kwargs):
        calls["create"] = (repo_id, kwargs.get("private"))

    def upload_folder(*, repo_id, folder_path, commit_message, **kwargs):
        from pathlib import Path

        calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
        calls["card"] = (Path(folder_path) / "README.md").read_text()
        return type("Commit", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()

    monkeypatch.setenv("HF_TOKEN", "hf_dummy_token_for_the_test")
    monkeypatch.setattr(huggingface_hub, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    result = tiny_embedder.push_to_hub("me/my-model", private=True)
    assert result.url == "https://huggingface.co/me/my-model/commit/abc"
    assert calls["create"] == ("me/my-model", True)
    assert {"modules.json", "model.safetensors", "README.md", "1_Pooling"} <= set(calls["files"])
    assert "# my-model" in calls["card"]
    with pytest.raises(ValueError, match="must look like namespace/name"):
        tiny_embedder.push_to_hub("no-namespace")