"""sentence-transformers evaluators run on a textdml ``Embedder`` as they are, alone and inside training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.evaluation import (
    EmbeddingSimilarityEvaluator,
    InformationRetrievalEvaluator,
    TripletEvaluator,
)

from textdml import Embedder, Trainer, TrainingConfig
from textdml.config import load_run_config
from textdml.losses import InfoNCELoss
from textdml.training.loop import train

WORDS = "cat dog bird fish tree river stone cloud rain snow wind fire light dark apple bread".split()


def sentences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=5)) for _ in range(n)]


def ir_evaluator() -> InformationRetrievalEvaluator:
    docs = sentences(12, 0)
    corpus = {f"d{i}": text for i, text in enumerate(docs)}
    queries = {f"q{i}": " ".join(text.split()[:3]) for i, text in enumerate(docs[:6])}
    return InformationRetrievalEvaluator(queries, corpus, {f"q{i}": {f"d{i}"} for i in range(6)}, name="toy",
                                         show_progress_bar=False)


def sts_evaluator() -> EmbeddingSimilarityEvaluator:
    first, second = sentences(10, 1), sentences(10, 2)
    return EmbeddingSimilarityEvaluator(first, second, list(np.linspace(0, 1, 10)), name="sts")


def triplet_evaluator() -> TripletEvaluator:
    anchors = sentences(8, 3)
    return TripletEvaluator(anchors, [a.split()[0] + " " + a for a in anchors], sentences(8, 4), name="triplets")


EVALUATORS = [ir_evaluator, sts_evaluator, triplet_evaluator]


@pytest.fixture
def saved_pair(tiny_model_dir, tmp_path):
    """The same weights as a textdml Embedder and as a SentenceTransformer."""
    embedder = Embedder.from_pretrained(tiny_model_dir, normalize=True)
    embedder.save_pretrained(tmp_path / "model")
    return embedder, SentenceTransformer(str(tmp_path / "model"), device="cpu")


@pytest.mark.parametrize("make", EVALUATORS, ids=lambda f: f.__name__)
def test_st_evaluator_gives_the_sentence_transformer_results(make, saved_pair):
    embedder, st_model = saved_pair
    evaluator = make()
    ours, theirs = evaluator(embedder), make()(st_model)
    assert ours.keys() == theirs.keys() and evaluator.primary_metric in ours
    for key in theirs:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-5), key
    assert embedder.model_card_data.eval_results  # the evaluator recorded its results, as on an ST model


def test_similarity_surface(tiny_embedder):
    a, b = torch.randn(3, 4), torch.randn(5, 4)
    assert tiny_embedder.similarity == "cosine" and tiny_embedder.similarity_fn_name == "cosine"
    torch.testing.assert_close(tiny_embedder.similarity(a, b),
                               torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T)
    tiny_embedder.similarity = "dot"
    torch.testing.assert_close(tiny_embedder.similarity(a, b), a @ b.T)
    with pytest.raises(ValueError, match="'cosine' or 'dot'"):
        tiny_embedder.similarity = "euclidean"


def test_encode_takes_sentence_transformers_arguments(tiny_embedder):
    texts = ["a cat", "a dog on a mat"]
    as_tensor = tiny_embedder.encode(texts, convert_to_tensor=True)
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.shape == (2, 32)
    assert isinstance(tiny_embedder.encode(texts, convert_to_numpy=True), np.ndarray)
    normalized = tiny_embedder.encode(texts, normalize_embeddings=True, convert_to_tensor=True)
    torch.testing.assert_close(normalized.norm(dim=-1), torch.ones(2))
    assert tiny_embedder.encode(texts, truncate_dim=8).shape == (2, 8)
    prompted = tiny_embedder.encode(texts, prompt="query: ")
    np.testing.assert_allclose(prompted, tiny_embedder.encode(["query: a cat", "query: a dog on a mat"]), atol=1e-6)
    with pytest.raises(ValueError, match="is not one of this model's prompts"):
        tiny_embedder.encode(texts, prompt_name="query")
    with pytest.raises(TypeError, match="unexpected keyword"):
        tiny_embedder.encode(texts, colour="red")


@pytest.mark.parametrize("make", EVALUATORS, ids=lambda f: f.__name__)
def test_train_with_a_sentence_transformers_evaluator(make, tiny_model_dir, tmp_path):
    data = Dataset.from_dict({"anchor": sentences(16, 5), "positive": sentences(16, 6)})
    config = load_run_config(None, ["train.path=in-memory", f"model.name_or_path={tiny_model_dir}",
                                    f"training.output_dir={tmp_path}", "training.batch_size=8",
                                    "training.max_steps=2", "training.eval_steps=1",
                                    "training.show_progress_bar=false"])
    evaluator = make()
    result = train(config, train_dataset=data, evaluator=evaluator)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if f"eval_{evaluator.primary_metric}" in r] == [1, 2]
    assert result.best_model is not None  # chosen by the evaluator's own primary metric


def test_trainer_takes_a_sentence_transformers_evaluator(tiny_model_dir, tmp_path):
    data = Dataset.from_dict({"anchor": sentences(16, 7), "positive": sentences(16, 8)})
    evaluator = ir_evaluator()
    result = Trainer(Embedder.from_pretrained(tiny_model_dir), InfoNCELoss(), data, evaluator=evaluator,
                     args=TrainingConfig(output_dir=str(tmp_path), batch_size=8, max_steps=1,
                                         show_progress_bar=False)).train()
    assert f"eval_{evaluator.primary_metric}" in result.metrics[-1]
