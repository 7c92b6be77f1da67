"""Graded-score data (anchor, positive, score): roles, collator, range checks and training."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from textdml.config import load_run_config
from textdml.data.collator import RoleCollator
from textdml.data.roles import resolve_roles
from textdml.losses.cosent import CoSENTLoss
from textdml.models import Embedder
from textdml.training.loop import train
from textdml.training.tasks import EmbeddingTask
from textdml.training.tasks.scores import check_score_column

ROWS = [{"anchor": f"sentence {i}", "positive": f"another sentence {i}", "score": i / 5} for i in range(6)]


def test_a_score_column_makes_scored_pairs():
    roles = resolve_roles(["anchor", "positive", "score"], "cosent", ("scores",))
    assert (roles.kind, roles.score) == ("scores", "score")
    renamed = resolve_roles(["s1", "s2", "gold"], "cosent", ("scores",), {"anchor": "s1", "positive": "s2",
                                                                          "score": "gold"})
    assert (renamed.kind, renamed.score) == ("scores", "gold")


def test_a_loss_without_scores_rejects_scored_data_and_vice_versa():
    with pytest.raises(ValueError, match=r"trains on .*but the dataset's columns .* make it scores"):
        resolve_roles(["anchor", "positive", "score"], "info_nce", ("pairs", "triplets"))
    with pytest.raises(ValueError, match=r"'cosent' trains on scores \[anchor, positive, score"):
        resolve_roles(["anchor", "positive"], "cosent", ("scores",))


def test_the_collator_returns_the_scores(tiny_embedder):
    roles = resolve_roles(list(ROWS[0]), "cosent", ("scores",))
    batch = RoleCollator(tiny_embedder, roles)(ROWS)
    torch.testing.assert_close(batch["scores"], torch.tensor([r["score"] for r in ROWS]))
    assert batch["inputs"].role_sizes == [6, 6]


@pytest.mark.parametrize("bad", [None, "high", float("nan")])
def test_a_bad_score_cell_names_column_and_row(tiny_embedder, bad):
    rows = [dict(r) for r in ROWS]
    rows[4]["score"] = bad
    roles = resolve_roles(list(ROWS[0]), "cosent", ("scores",))
    with pytest.raises(ValueError, match="column 'score': row 4 of this batch"):
        RoleCollator(tiny_embedder, roles)(rows)


def test_a_score_outside_the_loss_range_names_row_and_range():
    values = [0.1, 0.5, 3.5, 0.2]
    with pytest.raises(ValueError, match=r"column 'gold' row 2 has score 3.5, outside CoSENTLoss's range \[-1, 1\]"):
        check_score_column(values, "gold", CoSENTLoss())
    check_score_column(values, "gold", CoSENTLoss(score_range=[0, 5]))


def test_the_task_feeds_the_loss_pairs_and_scores(tiny_model_dir):
    embedder = Embedder.from_pretrained(tiny_model_dir).eval()
    roles = resolve_roles(list(ROWS[0]), "cosent", ("scores",))
    batch = RoleCollator(embedder, roles)(ROWS)
    value = EmbeddingTask(embedder, CoSENTLoss())(batch).loss
    first = embedder(embedder.tokenize([r["anchor"] for r in ROWS]))
    second = embedder(embedder.tokenize([r["positive"] for r in ROWS]))
    torch.testing.assert_close(value, CoSENTLoss()(first, batch["scores"], ref_embeddings=second), rtol=1e-4, atol=1e-5)


def make_config(tiny_model_dir, tmp_path, *overrides):
    return load_run_config(None, ["train.path=in-memory", f"model.name_or_path={tiny_model_dir}",
                                  f"training.output_dir={tmp_path / 'run'}", "training.batch_size=8",
                                  "training.max_steps=2", "training.show_progress_bar=false", *overrides])


def scored_dataset(scale: float = 1.0) -> Dataset:
    return Dataset.from_list([{"anchor": f"text {i}", "positive": f"other text {i % 5}", "score": scale * (i % 5) / 4}
                              for i in range(16)])


@pytest.mark.parametrize("loss", ["cosent", "angle"])
def test_two_training_steps(tiny_model_dir, tmp_path, loss):
    result = train(make_config(tiny_model_dir, tmp_path, f"loss.name={loss}"), train_dataset=scored_dataset())
    assert result.global_step == 2 and all(r["loss"] > 0 for r in result.metrics)


def test_training_stops_before_the_first_step_on_an_out_of_range_score(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match=r"column 'score' row 1 has score 1.25, outside CoSENTLoss's range"):
        train(make_config(tiny_model_dir, tmp_path, "loss.name=cosent"), train_dataset=scored_dataset(5.0))
    result = train(make_config(tiny_model_dir, tmp_path, "loss.name=cosent", "loss.score_range=[0, 5]"),
                   train_dataset=scored_dataset(5.0))
    assert result.global_step == 2
