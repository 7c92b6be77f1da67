"""A frozen teacher in the task: loaded from the loss's name, fed the raw texts, never trained or saved."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer, BertModel

from textdml.config import load_run_config
from textdml.data.collator import RoleCollator
from textdml.data.roles import resolve_roles
from textdml.losses.distill_kl_div import DistillKLDivLoss
from textdml.losses.margin_mse import MarginMSELoss
from textdml.losses.mse import MSELoss
from textdml.models import Embedder
from textdml.models.embedder import tiny_bert_config
from textdml.training.loop import train
from textdml.training.tasks import EmbeddingTask
from textdml.training.tasks.teacher import resolve_packaged_model

ROWS = [{"anchor": f"query {i}", "positive": f"the answer {i}", "negative": f"a wrong answer {i + 3}"} for i in range(6)]


@pytest.fixture(scope="module")
def narrow_model_dir(tmp_path_factory, tiny_model_dir):
    """A 16-d random BERT: a teacher whose size differs from the 32-d student's."""
    torch.manual_seed(1)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    path = tmp_path_factory.mktemp("narrow_bert")
    BertModel(tiny_bert_config(vocab_size=tokenizer.vocab_size, hidden_size=16)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def collate(embedder, rows, kinds=("pairs", "triplets")):
    roles = resolve_roles(list(rows[0]), "test", kinds)
    return RoleCollator(embedder, roles, keep_texts=True)(rows)


def test_the_student_as_its_own_teacher_has_zero_loss(tiny_model_dir):
    # Same weights, eval mode (no dropout): every role's rows must line up with the teacher's.
    student = Embedder.from_pretrained(tiny_model_dir).eval()
    for loss in (MSELoss(teacher=str(tiny_model_dir)), MarginMSELoss(teacher=str(tiny_model_dir)),
                 DistillKLDivLoss(teacher=str(tiny_model_dir))):
        task = EmbeddingTask(student, loss)
        value = task(collate(student, ROWS)).loss
        assert abs(value.item()) < 1e-5, type(loss).__name__


def test_the_teacher_is_frozen_and_not_part_of_the_task(tiny_model_dir):
    student = Embedder.from_pretrained(tiny_model_dir)
    task = EmbeddingTask(student, MSELoss(teacher=str(tiny_model_dir)))
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.01 * torch.randn_like(p))  # now the student differs from the teacher
    output = task(collate(student, ROWS))
    output.loss.backward()
    assert output.loss.item() > 0
    assert all(not p.requires_grad and p.grad is None for p in task.teacher.embedder.parameters())
    assert any(p.grad is not None for p in student.parameters())
    assert not any(key.startswith("teacher") for key in task.state_dict())
    assert sum(1 for _ in task.parameters()) == sum(1 for _ in student.parameters())


def test_a_teacher_of_another_size_needs_a_projection(tiny_model_dir, narrow_model_dir):
    student = Embedder.from_pretrained(tiny_model_dir)
    with pytest.raises(ValueError, match=r"16-d .*32-d .*loss.projection_dim=16"):
        EmbeddingTask(student, MSELoss(teacher=str(narrow_model_dir)))
    task = EmbeddingTask(student, MSELoss(teacher=str(narrow_model_dir), projection_dim=16, embedding_size=32))
    assert torch.isfinite(task(collate(student, ROWS)).loss)
    # Score distillation compares scores, not embeddings: any teacher size works.
    assert torch.isfinite(EmbeddingTask(student, MarginMSELoss(teacher=str(narrow_model_dir)))(collate(student, ROWS)).loss)


def test_a_loss_without_its_teacher_says_which_key_to_set(tiny_model_dir):
    with pytest.raises(ValueError, match=r"loss.teacher=<folder or Hub id>"):
        EmbeddingTask(Embedder.from_pretrained(tiny_model_dir), MSELoss())


def test_the_packaged_minilm_resolves_offline(minilm_path):
    assert resolve_packaged_model("sentence-transformers/all-MiniLM-L6-v2") == str(minilm_path)
    assert resolve_packaged_model("someone/unknown-model") == "someone/unknown-model"


def test_two_training_steps_with_a_teacher(tiny_model_dir, tmp_path):
    dataset = Dataset.from_list([{"anchor": f"question {i}", "positive": f"an answer {i} " + "word " * (i % 4),
                                  "negative": f"another answer {i + 7}"} for i in range(16)])
    config = load_run_config(None, ["train.path=in-memory", f"model.name_or_path={tiny_model_dir}",
                                    f"training.output_dir={tmp_path / 'run'}", "training.batch_size=8",
                                    "training.max_steps=2", "training.show_progress_bar=false",
                                    "loss.name=margin_mse", f"loss.teacher={tiny_model_dir}"])
    result = train(config, train_dataset=dataset)
    assert result.global_step == 2 and all(r["loss"] >= 0 for r in result.metrics)
    assert (result.final_model / "modules.json").exists()


def test_cached_gist_embed_gives_the_plain_gradient(tiny_model_dir):
    # Eval mode: dropout masks depend on the mini-batch shapes, which differ from the plain path's.
    from textdml.losses.cached_gist_embed import CachedGISTEmbedLoss

    rows = ROWS + [{"anchor": f"more {i}", "positive": f"text {i}", "negative": f"noise {i}"} for i in range(4)]
    grads = []
    for cached in (False, True):
        torch.manual_seed(0)
        student = Embedder.from_pretrained(tiny_model_dir).eval()
        task = EmbeddingTask(student, CachedGISTEmbedLoss(guide=str(tiny_model_dir), temperature=0.1, mini_batch_size=3))
        batch = collate(student, rows)
        torch.manual_seed(1)
        if cached:
            value = task.cached_step(batch, mini_batch_size=3).loss
        else:
            value = task(batch).loss
            value.backward()
        grads.append((value.detach(), [p.grad.clone() for p in student.parameters() if p.grad is not None]))
    (plain, plain_grads), (cached_value, cached_grads) = grads
    torch.testing.assert_close(cached_value, plain)
    assert len(plain_grads) == len(cached_grads) > 0
    for a, b in zip(plain_grads, cached_grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_two_training_steps_with_cached_gist_embed(tiny_model_dir, tmp_path):
    dataset = Dataset.from_list([{"anchor": f"question {i}", "positive": f"an answer {i}"} for i in range(16)])
    config = load_run_config(None, ["train.path=in-memory", f"model.name_or_path={tiny_model_dir}",
                                    f"training.output_dir={tmp_path / 'run'}", "training.batch_size=8",
                                    "training.max_steps=2", "training.show_progress_bar=false",
                                    "loss.name=cached_gist_embed", f"loss.guide={tiny_model_dir}",
                                    "loss.mini_batch_size=3"])
    result = train(config, train_dataset=dataset)
    assert result.global_step == 2 and all(r["loss"] > 0 for r in result.metrics)


def test_precomputed_teacher_scores_from_a_score_column(tiny_embedder):
    rows = [dict(r, score=[0.9, 0.1 * i]) for i, r in enumerate(ROWS)]  # raw scores: positive, negative
    batch = collate(tiny_embedder, rows)
    torch.testing.assert_close(batch["teacher_scores"], torch.tensor([r["score"] for r in rows]))
    for loss in (MarginMSELoss(), DistillKLDivLoss()):
        task = EmbeddingTask(tiny_embedder.eval(), loss)  # no teacher model: the data brings its scores
        assert task.teacher is None
        roles = batch["inputs"].split(torch.cat([tiny_embedder(b) for b in batch["inputs"].blocks]))
        expected = loss(roles[0], ref_embeddings=torch.cat(roles[1:]), teacher_scores=batch["teacher_scores"])
        torch.testing.assert_close(task(batch).loss, expected, rtol=1e-4, atol=1e-6)
    margins = collate(tiny_embedder, [dict(r, score=0.5) for r in ROWS])["teacher_scores"]
    assert margins.shape == (len(ROWS),)
    with pytest.raises(ValueError, match="teacher scores must be a number or a list"):
        collate(tiny_embedder, [dict(r, score="high") for r in ROWS])


def test_no_teacher_and_no_scores_is_an_error_before_training(tiny_model_dir, tmp_path):
    dataset = Dataset.from_list(ROWS * 3)
    config = load_run_config(None, ["train.path=in-memory", f"model.name_or_path={tiny_model_dir}",
                                    f"training.output_dir={tmp_path / 'run'}", "training.batch_size=4",
                                    "training.max_steps=1", "training.show_progress_bar=false", "loss.name=margin_mse"])
    with pytest.raises(ValueError, match=r"loss.teacher=<folder or Hub id>, or give the triplets a 'score' column"):
        train(config, train_dataset=dataset)
