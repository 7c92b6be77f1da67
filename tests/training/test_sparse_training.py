"""A sparse (SPLADE) model trained through textdml's loop: config checks, the end-to-end run, the
saved final/ in sentence-transformers' SparseEncoder, retrieval metrics with sparsity."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import Dataset

from tests.training.loop_inputs import make_config, pairs_dataset
from textdml.config import ConfigError, load_run_config
from textdml.evaluation.retrieval import InformationRetrievalEvaluator
from textdml.models.sparse import SparseEmbedder
from textdml.training.setup import build_run

SPARSE = ["model.kind=sparse", "loss.name=sparse_info_nce"]


def test_a_sparse_run_builds_a_sparse_model_and_task(tiny_model_dir, tmp_path):
    parts = build_run(make_config(tiny_model_dir, tmp_path / "run", *SPARSE), dataset=pairs_dataset(), loader=False)
    assert isinstance(parts.model, SparseEmbedder) and parts.task.embedder is parts.model


def test_train_two_steps_with_hard_negatives_and_load_final_in_sentence_transformers(tiny_mlm_dir, tmp_path):
    from sentence_transformers import SparseEncoder

    from textdml.training.trainer import train

    rows = pairs_dataset(16)
    rows = rows.add_column("negative", [f"an unrelated text {i}" for i in range(16)])
    config = make_config(tiny_mlm_dir, tmp_path / "run", *SPARSE, "training.max_steps=2", "training.preflight=false",
                         "model.prompts.query=find ")
    train(config, train_dataset=rows)
    final = tmp_path / "run" / "final"
    assert json.loads((final / "config_sentence_transformers.json").read_text())["model_type"] == "SparseEncoder"
    ours, theirs = SparseEmbedder.load(final), SparseEncoder(str(final), device="cpu")
    texts = ["question number 3", "the answer is 3"]
    np.testing.assert_allclose(theirs.encode_query(texts).to_dense().numpy(), ours.encode(texts, kind="query"),
                               atol=1e-5)
    np.testing.assert_allclose(theirs.encode_document(texts).to_dense().numpy(), ours.encode(texts), atol=1e-5)
    card = (final / "README.md").read_text()  # a SparseEncoder's card: its tags, usage and module stack
    assert "- sparse-encoder" in card and 'SparseEncoder("' in card and "SparseEncoder(\n  (0): MLMTransformer" in card
    # Trained: the weights differ from the start.
    assert ours.identity()["weights_sha256"] != SparseEmbedder.load(tiny_mlm_dir).identity()["weights_sha256"]


def test_retrieval_metrics_report_sparsity(tiny_mlm_dir):
    model = SparseEmbedder.load(tiny_mlm_dir)
    queries = {"q1": "a cat", "q2": "stock prices"}
    corpus = {"d1": "a cat sat", "d2": "stock prices fell", "d3": "rain"}
    evaluator = InformationRetrievalEvaluator(queries, corpus, {"q1": {"d1"}, "q2": {"d2"}}, name="toy")
    metrics = evaluator(model)
    query_weights, corpus_weights = model.encode(list(queries.values()), kind="query"), model.encode(
        [corpus[d] for d in sorted(corpus)])
    assert metrics["toy_query_active_dims"] == pytest.approx((query_weights != 0).sum(axis=1).mean())
    assert metrics["toy_corpus_active_dims"] == pytest.approx((corpus_weights != 0).sum(axis=1).mean())
    assert 0 <= metrics["toy_ndcg@10"] <= 1
    hits = evaluator.search(model)["q1"]
    scores = model.encode(["a cat"], kind="query") @ corpus_weights.T  # dot product over the vocabulary
    assert hits[0][0] == sorted(corpus)[int(scores.argmax())]


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.kind=sparse"], r"loss 'info_nce' does not train a sparse model .*sparse_info_nce"),
    (["loss.name=sparse_info_nce"], r"trains a sparse \(SPLADE\) model, but model.kind is 'text': set model.kind=sparse"),
    ([*SPARSE, "model.pooling=cls"], r"model.pooling does not apply to model.kind=sparse"),
])
def test_config_mismatches_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_run_config(None, ["train.path=in-memory", *overrides])


def test_a_dense_model_folder_is_refused_where_a_sparse_one_is_loaded(tiny_embedder, tmp_path):
    from textdml.models.loading import load_model

    tiny_embedder.save_pretrained(tmp_path / "dense")
    assert not isinstance(load_model(tmp_path / "dense"), SparseEmbedder)
    with pytest.raises(ValueError, match=r"holds a dense embedding model .*SparseEmbedder.from_encoder"):
        SparseEmbedder.load(tmp_path / "dense")


def test_recipe_trains_from_a_dense_sentence_transformers_folder(tiny_embedder, tmp_path):
    """model.kind=sparse starts from the transformer of a dense folder, as the recipe does from MiniLM."""
    tiny_embedder.save_pretrained(tmp_path / "dense")
    config = make_config(tmp_path / "dense", tmp_path / "run", *SPARSE)
    parts = build_run(config, dataset=Dataset.from_dict({"anchor": ["a"], "positive": ["b"]}), loader=False)
    assert isinstance(parts.model, SparseEmbedder) and parts.model.vocab_size == tiny_embedder.tokenizer.vocab_size


def test_hard_negatives_are_mined_with_the_sparse_model_before_training(tiny_mlm_dir, tmp_path):
    from textdml.training.trainer import train

    pairs_dataset(16).to_json(tmp_path / "pairs.jsonl")  # mining runs on the configured train data
    config = make_config(tiny_mlm_dir, tmp_path / "run", *SPARSE, "training.max_steps=1", "training.preflight=false",
                         f"train.path={tmp_path / 'pairs.jsonl'}", "mine.num_negatives=1", "mine.range_max=5")
    train(config)
    settings = json.loads((tmp_path / "run" / "mined" / "mining_settings.json").read_text())
    assert settings["model"]["kind"] == "sparse" and settings["rows"] == 16
    assert (tmp_path / "run" / "final" / "1_SpladePooling" / "config.json").exists()


def test_the_python_trainer_trains_a_sparse_model(tiny_mlm_dir, tmp_path):
    from textdml import Trainer, TrainingConfig
    from textdml.losses import SparseInfoNCELoss

    model = SparseEmbedder.load(tiny_mlm_dir)
    args = TrainingConfig(output_dir=str(tmp_path / "run"), batch_size=8, max_steps=1, preflight=False,
                          show_progress_bar=False)
    trainer = Trainer(model=model, loss=SparseInfoNCELoss(), train_dataset=pairs_dataset(16), args=args)
    assert trainer.run_config().model.kind == "sparse"
    trainer.train()
    assert SparseEmbedder.load(tmp_path / "run" / "final").vocab_size == model.vocab_size


def test_sparse_margin_mse_distils_a_dense_teacher(tiny_mlm_dir, tiny_model_dir, tmp_path):
    from textdml.training.trainer import train

    rows = pairs_dataset(16).add_column("negative", [f"an unrelated text {i}" for i in range(16)])
    config = make_config(tiny_mlm_dir, tmp_path / "run", "model.kind=sparse", "loss.name=sparse_margin_mse",
                         f"loss.teacher={tiny_model_dir}", "training.max_steps=1", "training.preflight=false")
    train(config, train_dataset=rows)
    assert SparseEmbedder.load(tmp_path / "run" / "final").identity()["kind"] == "sparse"
