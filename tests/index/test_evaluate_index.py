"""``textdml eval --through-index``: the live collection is searched over the eval corpus only, so
its figures compare with the exact evaluation; a collection missing part of it says so (issue 20)."""

from __future__ import annotations

import pytest

from tests.fakes import HashingEncoder, toy_queries
from textdml.config import IndexConfig
from textdml.evaluation.retrieval import InformationRetrievalEvaluator
from textdml.index import index_documents, open_client
from textdml.index.evaluate_index import evaluate_live_index

COLLECTION = "docs"


def index_into(path, engine_kind, corpus):
    with open_client(path=path, engine=engine_kind) as engine:
        index_documents(HashingEncoder(), [{"id": i, "text": t} for i, t in corpus.items()], engine, COLLECTION,
                        batch_size=16, show_progress_bar=False)


def eval_subset(corpus, size):
    subset = dict(sorted(corpus.items())[:size])  # e.g. eval.data.max_rows: a prefix of what was indexed
    queries, relevant = toy_queries(subset, num_queries=12)
    return subset, InformationRetrievalEvaluator(queries, subset, relevant)


def test_the_live_index_is_searched_over_the_eval_corpus_only(engine_kind, index_path, corpus, capsys):
    index_into(index_path, engine_kind, corpus)  # 40 points
    subset, evaluator = eval_subset(corpus, 12)
    config = IndexConfig(collection=COLLECTION, path=str(index_path), engine=engine_kind)
    exact = evaluator(HashingEncoder())
    through = evaluate_live_index(HashingEncoder(), evaluator, config)
    # Below the HNSW threshold the search is exact: the same corpus gives the same figures.
    assert {k.removeprefix("index/"): v for k, v in through.items() if "index_recall" not in k} == pytest.approx(exact)
    out = capsys.readouterr().out
    assert "only the 12 documents of the eval corpus among the collection's 40 points" in out
    assert "different corpus" not in out


def test_a_collection_missing_part_of_the_eval_corpus_says_so(engine_kind, index_path, corpus, capsys):
    indexed = dict(sorted(corpus.items())[5:])
    index_into(index_path, engine_kind, indexed)
    _, evaluator = eval_subset(corpus, 12)
    config = IndexConfig(collection=COLLECTION, path=str(index_path), engine=engine_kind)
    evaluate_live_index(HashingEncoder(), evaluator, config)
    out = capsys.readouterr().out
    assert "the collection lacks 5 and holds 0 with another text of the 12 documents" in out
    assert "different corpus than the exact ones" in out


def test_a_collection_of_other_documents_is_an_error(engine_kind, index_path, corpus):
    index_into(index_path, engine_kind, {doc_id: f"other text {doc_id}" for doc_id in corpus})  # same ids, other texts
    _, evaluator = eval_subset(corpus, 12)
    config = IndexConfig(collection=COLLECTION, path=str(index_path), engine=engine_kind)
    with pytest.raises(ValueError, match=r"collection 'docs' \(40 points\) holds none of the 12 documents"):
        evaluate_live_index(HashingEncoder(), evaluator, config)
