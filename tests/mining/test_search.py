"""The Searcher seam: exact and collection search agree, and mining uses whatever searcher it is given."""

from __future__ import annotations

import json

import torch

from textdml.evaluation.retrieval import encode_for_search
from textdml.index import SearchOptions
from textdml.mining import (
    CollectionSearcher,
    CorpusSearcher,
    ExactSearcher,
    mine_hard_negatives,
    mining_documents,
    open_collection_searcher,
)
from textdml.models import Embedder


def test_exact_and_collection_searchers_give_the_same_candidates(engine, saved_model, pairs, corpus) -> None:
    model = Embedder.from_pretrained(saved_model)
    documents = mining_documents(pairs, corpus=corpus)
    queries = encode_for_search(model, list(dict.fromkeys(pairs["anchor"])), 16, False, "query")
    exact = ExactSearcher(encode_for_search(model, documents, 16, False, "document"))
    collection = open_collection_searcher(model, engine, "docs", documents, search_options=SearchOptions(exact=True),
                                          show_progress_bar=False)
    assert isinstance(collection, CollectionSearcher) and isinstance(collection, CorpusSearcher)
    assert not isinstance(exact, CorpusSearcher)
    assert collection.corpus == documents  # it indexed the task's documents: the same positions
    exact_scores, exact_positions = exact.search(queries, 10)
    scores, positions = collection.search(queries, 10)
    assert positions.tolist() == exact_positions.tolist()
    torch.testing.assert_close(scores, exact_scores, atol=1e-5, rtol=1e-5)


def test_mining_searches_with_the_searcher_it_is_given(saved_model, pairs, corpus) -> None:
    model = Embedder.from_pretrained(saved_model)
    documents = mining_documents(pairs, corpus=corpus)

    class Recording:
        """Exact search over the same vectors, counting its calls."""

        def __init__(self) -> None:
            self.exact = ExactSearcher(encode_for_search(model, documents, 16, False, "document"))
            self.queries = 0

        def search(self, query_vectors: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
            self.queries += len(query_vectors)
            return self.exact.search(query_vectors, k)

    searcher = Recording()
    given = mine_hard_negatives(pairs, model, corpus=corpus, searcher=searcher, shard_size=8, show_progress_bar=False)
    default = mine_hard_negatives(pairs, model, corpus=corpus, show_progress_bar=False)
    assert searcher.queries == len(set(pairs["anchor"]))  # every anchor, once
    assert given["negative_1"] == default["negative_1"] and given.num_rows == default.num_rows


def test_a_searcher_that_finds_nothing_leaves_no_rows(saved_model, pairs, corpus) -> None:
    class Empty:
        def search(self, query_vectors: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.full((len(query_vectors), k), -float("inf")), torch.full((len(query_vectors), k), -1)

    mined = mine_hard_negatives(pairs, Embedder.from_pretrained(saved_model), corpus=corpus, searcher=Empty(),
                                show_progress_bar=False)
    assert mined.num_rows == 0


def test_a_collection_searcher_handed_in_mines_as_the_deprecated_collection_keywords(engine, saved_model, pairs,
                                                                                    corpus, tmp_path) -> None:
    model = Embedder.from_pretrained(saved_model)
    exact = SearchOptions(exact=True)
    old = mine_hard_negatives(pairs, model, corpus=corpus, collection="docs", engine=engine, search_options=exact,
                              output_dir=tmp_path / "old", show_progress_bar=False)
    searcher = open_collection_searcher(model, engine, "docs", mining_documents(pairs, corpus=corpus),
                                        search_options=exact, show_progress_bar=False)
    new = mine_hard_negatives(pairs, model, corpus=corpus, searcher=searcher, output_dir=tmp_path / "new",
                              show_progress_bar=False)
    assert new.to_dict() == old.to_dict()
    record = json.loads((tmp_path / "new" / "mining_settings.json").read_text())
    assert record["collection"]["version"] == searcher.version and not record["collection"]["indexed"]
