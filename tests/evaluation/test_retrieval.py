from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from tests.fakes import HashingEncoder, toy_corpus, toy_queries
from textdml.evaluation.retrieval import (
    InformationRetrievalEvaluator,
    compute_metrics,
    exact_top_k,
    format_table,
)
from textdml.models.protocols import SupportsEncode
from textdml.registry import EVALUATORS

K_VALUES = (1, 3, 5, 10)


# ---- naive references: one metric each, written for clarity -------------------------------------


def naive_ranking(hits):
    return [doc_id for _, doc_id in sorted((-score, doc_id) for doc_id, score in hits)]


def naive_recall(ranking, relevant, k):
    return len([d for d in ranking[:k] if d in relevant]) / len(relevant)


def naive_precision(ranking, relevant, k):
    return len([d for d in ranking[:k] if d in relevant]) / k


def naive_accuracy(ranking, relevant, k):
    return 1.0 if any(d in relevant for d in ranking[:k]) else 0.0


def naive_mrr(ranking, relevant, k):
    for position in range(min(k, len(ranking))):
        if ranking[position] in relevant:
            return 1.0 / (position + 1)
    return 0.0


def naive_ndcg(ranking, relevant, k):
    dcg = 0.0
    for position in range(min(k, len(ranking))):
        if ranking[position] in relevant:
            dcg += 1.0 / math.log2(position + 2)
    ideal = 0.0
    for position in range(min(k, len(relevant))):
        ideal += 1.0 / math.log2(position + 2)
    return dcg / ideal


def naive_average_precision(ranking, relevant, k):
    found, total = 0, 0.0
    for position in range(min(k, len(ranking))):
        if ranking[position] in relevant:
            found += 1
            total += found / (position + 1)
    return total / min(k, len(relevant))


def naive_metrics(hits, relevant_docs):
    queries = [qid for qid in hits if relevant_docs.get(qid)]
    metrics = {}
    for k in K_VALUES:
        for metric, fn in (("accuracy", naive_accuracy), ("precision", naive_precision), ("recall", naive_recall)):
            metrics[f"{metric}@{k}"] = np.mean([fn(naive_ranking(hits[q]), relevant_docs[q], k) for q in queries])
    metrics["mrr@10"] = np.mean([naive_mrr(naive_ranking(hits[q]), relevant_docs[q], 10) for q in queries])
    metrics["ndcg@10"] = np.mean([naive_ndcg(naive_ranking(hits[q]), relevant_docs[q], 10) for q in queries])
    metrics["map@100"] = np.mean(
        [naive_average_precision(naive_ranking(hits[q]), relevant_docs[q], 100) for q in queries]
    )
    return metrics


def random_hits(seed, num_queries=25, num_docs=150, with_ties=True):
    """Shuffled hits with tied scores, short lists, relevant docs past rank 10 and a query without relevant docs."""
    rng = random.Random(seed)
    doc_ids = [f"doc{i}" for i in range(num_docs)]
    hits, relevant = {}, {}
    for q in range(num_queries):
        num_hits = rng.choice([3, 12, 120])
        scores = [round(rng.random(), 1) if with_ties else rng.random() for _ in range(num_hits)]
        hits[f"q{q}"] = list(zip(rng.sample(doc_ids, num_hits), scores, strict=True))
        relevant[f"q{q}"] = set(rng.sample(doc_ids, rng.randint(1, 15)))
    relevant["q0"] = set()
    return hits, relevant


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_naive_loops(seed):
    hits, relevant = random_hits(seed)
    ours = compute_metrics(hits, relevant, k_values=K_VALUES)
    expected = naive_metrics(hits, relevant)
    assert ours.keys() == expected.keys()
    for name in expected:
        assert ours[name] == pytest.approx(expected[name], abs=1e-12), name


def test_metrics_on_a_hand_computed_case():
    hits = {"q1": [("a", 0.1), ("b", 0.9), ("c", 0.5)]}  # ranking: b, c, a
    metrics = compute_metrics(hits, {"q1": {"a", "c"}}, k_values=(1, 2, 3))
    assert metrics["recall@1"] == 0.0 and metrics["recall@2"] == 0.5 and metrics["recall@3"] == 1.0
    assert metrics["mrr@10"] == 0.5
    assert metrics["map@100"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    ideal = 1 + 1 / math.log2(3)
    assert metrics["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / 2) / ideal)


def test_metrics_reject_bad_inputs():
    with pytest.raises(ValueError, match="no query"):
        compute_metrics({"q1": [("a", 1.0)]}, {"q2": {"a"}})
    with pytest.raises(ValueError, match="cut-off"):
        compute_metrics({"q1": [("a", 1.0)]}, {"q1": {"a"}}, k_values=(0,))


# ---- parity with sentence-transformers ----------------------------------------------------------


def st_evaluator(queries, corpus, relevant, chunk_size=50000):
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator as STEvaluator

    return STEvaluator(queries, corpus, relevant, corpus_chunk_size=chunk_size, accuracy_at_k=list(K_VALUES),
                       precision_recall_at_k=list(K_VALUES), write_csv=False)


def flatten_st(scores):
    return {name.replace("@k", f"@{k}"): value for name, values in scores.items() for k, value in values.items()}


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_match_sentence_transformers_on_the_same_hits(seed):
    hits, relevant = random_hits(seed, with_ties=False)
    corpus = {f"doc{i}": f"text {i}" for i in range(150)}
    queries = {qid: f"query {qid}" for qid in hits}
    st = st_evaluator(queries, corpus, relevant)
    st_hits = [[{"corpus_id": d, "score": s} for d, s in hits[qid]] for qid in st.queries_ids]
    expected = flatten_st(st.compute_metrics(st_hits))
    ours = compute_metrics(hits, relevant, k_values=K_VALUES)
    assert ours.keys() == expected.keys()
    for name in expected:
        assert ours[name] == pytest.approx(float(expected[name]), abs=1e-12), name


class SentenceTransformerLike:
    """Just what sentence-transformers' evaluator calls on a model, backed by the fake encoder."""

    def __init__(self, encoder):
        self.encoder = encoder

    def encode_query(self, sentences, **kwargs):
        return self.encoder.encode(list(sentences), convert_to="torch")

    encode_document = encode_query


def corpus_with_duplicates():
    corpus = toy_corpus(num_docs=60)
    corpus.update({"d900": corpus["d003"], "d901": corpus["d003"], "d050x": corpus["d010"]})  # tied scores
    return corpus


@pytest.mark.parametrize("st_chunk, our_chunk", [(50000, 50000), (7, 5)])
def test_end_to_end_matches_sentence_transformers(st_chunk, our_chunk):
    from sentence_transformers.util import cos_sim

    encoder = HashingEncoder()
    corpus = corpus_with_duplicates()
    queries, relevant = toy_queries(corpus, num_queries=20)
    relevant["q03"] |= {"d900", "d901"}
    st = st_evaluator(queries, corpus, relevant, chunk_size=st_chunk)
    st.score_functions = {"cosine": cos_sim}
    expected = flatten_st(st.compute_all_metrics(SentenceTransformerLike(encoder))["cosine"])
    ours = InformationRetrievalEvaluator(queries, corpus, relevant, k_values=K_VALUES, chunk_size=our_chunk)(encoder)
    for name in expected:
        assert ours[name] == pytest.approx(float(expected[name]), abs=1e-6), name


# ---- exact search --------------------------------------------------------------------------------


def small_integers(num, dim=8, seed=0):
    """Integer-valued floats: every dot product is exact, whatever order a kernel sums in, so ties
    stay ties in every chunking (random floats can differ in the last bit between kernels)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(-4, 5, (num, dim), generator=generator).float()


def embeddings_with_ties(num, dim=8, seed=0):
    embeddings = small_integers(num, dim, seed)
    embeddings[5] = embeddings[17] = embeddings[30] = embeddings[2]  # equal scores for every query
    return embeddings


@pytest.mark.parametrize("chunk_size, query_block_size", [(1, 4), (7, 2), (13, 1024)])
def test_chunked_search_equals_unchunked(chunk_size, query_block_size):
    queries, corpus = small_integers(9, seed=1), embeddings_with_ties(40)
    queries[0] = corpus[2]
    full_scores, full_positions = exact_top_k(queries, [corpus], k=10)
    chunks = corpus.split(chunk_size)
    scores, positions = exact_top_k(queries, chunks, k=10, query_block_size=query_block_size)
    torch.testing.assert_close(scores, full_scores)
    assert torch.equal(positions, full_positions)


def test_exact_top_k_matches_a_full_sort_with_ties_by_position():
    queries, corpus = small_integers(6, seed=1), embeddings_with_ties(40)
    scores, positions = exact_top_k(queries, corpus.split(6), k=25)
    all_scores = (queries @ corpus.T).tolist()
    for row, row_scores in enumerate(all_scores):
        expected = sorted(range(len(row_scores)), key=lambda j: (-row_scores[j], j))[:25]
        assert positions[row].tolist() == expected


def test_exact_top_k_with_k_larger_than_the_corpus():
    scores, positions = exact_top_k(torch.randn(3, 4), torch.randn(5, 4).split(2), k=100)
    assert scores.shape == positions.shape == (3, 5)
    assert sorted(positions[0].tolist()) == [0, 1, 2, 3, 4]


# ---- the evaluator -------------------------------------------------------------------------------


@pytest.fixture
def toy():
    corpus = toy_corpus()
    queries, relevant = toy_queries(corpus)
    return queries, corpus, relevant


def test_evaluator_chunked_equals_unchunked(toy):
    encoder = HashingEncoder()
    unchunked = InformationRetrievalEvaluator(*toy, chunk_size=100_000)(encoder)
    chunked = InformationRetrievalEvaluator(*toy, chunk_size=3, batch_size=2)(encoder)
    assert chunked == pytest.approx(unchunked)


def test_evaluator_names_and_primary_metric(toy):
    evaluator = InformationRetrievalEvaluator(*toy, name="wordnet")
    results = evaluator(HashingEncoder())
    assert list(results) == [f"wordnet_{m}@{k}" for k in (1, 5, 10) for m in ("accuracy", "precision", "recall")] + [
        "wordnet_mrr@10", "wordnet_ndcg@10", "wordnet_map@100"]
    assert evaluator.primary_metric == "wordnet_ndcg@10" and evaluator.primary_metric in results
    assert InformationRetrievalEvaluator(*toy).primary_metric == "ndcg@10"
    assert results["wordnet_recall@10"] > 0.5  # the fake encoder does retrieve by shared words


def test_metric_names_are_the_keys_of_the_results(toy):
    """What training.metric_for_best_model is checked against before a run starts."""
    for evaluator in (InformationRetrievalEvaluator(*toy, name="wordnet", k_values=(1, 3), truncate_dims=[4, 8]),
                      InformationRetrievalEvaluator(*toy, truncate_dims=[8], mrr_at_k=5, map_at_k=7)):
        assert evaluator.metric_names == list(evaluator(HashingEncoder()))


def test_a_document_retrieves_itself():
    corpus = toy_corpus(num_docs=30)
    queries = {f"q{doc_id}": text for doc_id, text in corpus.items()}
    relevant = {f"q{doc_id}": {doc_id} for doc_id in corpus}
    results = InformationRetrievalEvaluator(queries, corpus, relevant)(HashingEncoder())
    assert results["recall@1"] == 1.0 and results["mrr@10"] == 1.0


def test_dot_similarity_scores_raw_inner_products(toy):
    queries, corpus, relevant = toy
    encoder = HashingEncoder(similarity="dot", embedding_dim=8)
    hits = InformationRetrievalEvaluator(queries, corpus, relevant).search(encoder)
    qid = next(iter(hits))
    doc_id, score = hits[qid][0]
    query_vector = encoder.encode([queries[qid]])[0]
    doc_vector = encoder.encode([corpus[doc_id]])[0]
    assert score == pytest.approx(float(query_vector @ doc_vector), rel=1e-5)
    assert abs(score) > 1.01 or np.linalg.norm(query_vector) != pytest.approx(1.0)  # not normalised


def test_queries_without_relevant_docs_are_skipped_and_missing_docs_warn(toy):
    queries, corpus, relevant = toy
    relevant = {**relevant, "q00": set()}
    evaluator = InformationRetrievalEvaluator(queries, corpus, relevant)
    assert "q00" not in evaluator.query_ids and len(evaluator.query_ids) == len(queries) - 1
    with pytest.warns(UserWarning, match="not in the corpus"):
        InformationRetrievalEvaluator(queries, corpus, {"q01": {"nope"}})
    with pytest.raises(ValueError, match="no query has a relevant"):
        InformationRetrievalEvaluator(queries, corpus, {"unknown": {"d001"}})


def test_registered_as_information_retrieval():
    assert EVALUATORS.get("information_retrieval") is InformationRetrievalEvaluator


def test_the_fake_encoder_follows_the_protocol():
    assert isinstance(HashingEncoder(), SupportsEncode)


def test_format_table_puts_matryoshka_sizes_in_columns():
    lines = format_table({"ndcg@10": 0.9, "recall@1": 0.5, "dim64_ndcg@10": 0.8, "dim64_recall@1": 0.4,
                          "dim32_ndcg@10": 0.7, "dim32_recall@1": 0.3}).splitlines()
    assert [line.split() for line in lines] == [["metric", "value", "dim64", "dim32"],
                                                ["ndcg@10", "0.9000", "0.8000", "0.7000"],
                                                ["recall@1", "0.5000", "0.4000", "0.3000"]]


def test_format_table_aligns_columns():
    lines = format_table({"wordnet_recall@1": 0.5, "ndcg@10": 0.123456}).splitlines()
    assert lines[0].split() == ["metric", "value"]
    assert lines[2].split() == ["ndcg@10", "0.1235"]
    assert len({len(line) for line in lines}) == 1
