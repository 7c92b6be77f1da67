from __future__ import annotations

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator as STEvaluator

from tests.fakes import HashingEncoder
from textdml.config import DataConfig, EvalConfig
from textdml.data.human_scores import load_human_similarity
from textdml.data.loading import load_data
from textdml.evaluation.build import build_evaluator
from textdml.evaluation.similarity import EmbeddingSimilarityEvaluator, similarity_correlations


def naive_ranks(x):
    """Average ranks (ties share the mean rank), as Spearman's definition."""
    order = sorted(range(len(x)), key=lambda i: x[i])
    ranks = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def naive_pearson(x, y):
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y))
    return cov / (sum((a - mx) ** 2 for a in x) ** 0.5 * sum((b - my) ** 2 for b in y) ** 0.5)


def test_correlations_match_a_naive_computation():
    gen = torch.Generator().manual_seed(0)
    first, second = torch.randn(30, 8, generator=gen), torch.randn(30, 8, generator=gen)
    gold = [round(v, 1) for v in torch.rand(30, generator=gen).tolist()]  # rounded: ties in the ranks
    cosines = torch.nn.functional.cosine_similarity(first, second).tolist()
    metrics = similarity_correlations(first, second, gold, ("cosine", "manhattan"))
    assert metrics["pearson_cosine"] == pytest.approx(naive_pearson(gold, cosines), abs=1e-6)
    assert metrics["spearman_cosine"] == pytest.approx(naive_pearson(naive_ranks(gold), naive_ranks(cosines)), abs=1e-6)
    assert set(metrics) == {"pearson_cosine", "spearman_cosine", "pearson_manhattan", "spearman_manhattan"}


def test_identical_gold_and_similarity_order_gives_one():
    gen = torch.Generator().manual_seed(1)
    first, second = torch.randn(10, 4, generator=gen), torch.randn(10, 4, generator=gen)
    gold = torch.nn.functional.cosine_similarity(first, second) * 5 + 2  # a monotone map of the cosine
    assert similarity_correlations(first, second, gold.tolist())["spearman_cosine"] == pytest.approx(1.0)


@pytest.mark.parametrize("name, rows", [("simlex999", 999), ("wordsim353", 353), ("lee", 1225)])
def test_the_gensim_sets_load_as_scored_pairs(name, rows):
    dataset = load_data("textdml:human_similarity", name=name)
    assert len(dataset) == rows and dataset.column_names == ["anchor", "positive", "score"]
    assert all(isinstance(s, float) for s in dataset["score"][:20])


@pytest.mark.parametrize("name", ["simlex999", "wordsim353", "lee"])
def test_matches_sentence_transformers_evaluator(name, tiny_embedder, tmp_path):
    dataset = load_human_similarity(name).select(range(120))
    tiny_embedder.max_seq_length = 64  # the tiny BERT has 128 positions; Lee documents are longer
    tiny_embedder.save_pretrained(tmp_path / "model")
    st_model = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    assert st_model.max_seq_length == 64
    names = ["cosine", "dot", "euclidean", "manhattan"]
    ours = EmbeddingSimilarityEvaluator(dataset["anchor"], dataset["positive"], dataset["score"], name="sts",
                                        similarities=names)(tiny_embedder)
    theirs = STEvaluator(dataset["anchor"], dataset["positive"], dataset["score"], name="sts",
                         similarity_fn_names=names, write_csv=False)(st_model)
    for key, value in ours.items():
        assert value == pytest.approx(theirs[key], abs=1e-4), key


def test_build_evaluator_picks_it_for_scored_data():
    evaluator = build_evaluator(EvalConfig(data=DataConfig(path="textdml:human_similarity", name="wordsim353")))
    assert isinstance(evaluator, EmbeddingSimilarityEvaluator) and evaluator.primary_metric == "spearman_cosine"
    results = evaluator(HashingEncoder())
    assert set(results) == {"pearson_cosine", "spearman_cosine"} and all(np.isfinite(list(results.values())))
    named = EmbeddingSimilarityEvaluator(["a", "b", "c"], ["b", "c", "a"], [1.0, 0.5, 0.0], name="sts",
                                         similarities=("dot", "cosine"))
    assert evaluator.metric_names == list(results) and named.metric_names == list(named(HashingEncoder()))


def test_bad_inputs(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="every pair needs both texts and a score"):
        EmbeddingSimilarityEvaluator(["a", "b"], ["c"], [1.0, 2.0])
    with pytest.raises(ValueError, match="similarity must be one of"):
        EmbeddingSimilarityEvaluator(["a"], ["b"], [1.0], similarities=("jaccard",))
    with pytest.raises(ValueError, match="different gold scores"):
        EmbeddingSimilarityEvaluator(["a", "b"], ["c", "d"], [1.0, 1.0])(HashingEncoder())
    with pytest.raises(ValueError, match="unknown human-scored set 'simlex'"):
        load_human_similarity("simlex")
    monkeypatch.setenv("TEXTDML_GENSIM_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="TEXTDML_GENSIM_DATA"):
        load_human_similarity("lee")
