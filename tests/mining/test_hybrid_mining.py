"""Mining through a hybrid collection (``mine.mode: hybrid``): candidates from the fused ranking,
scored by the model, on both engines."""

from __future__ import annotations

import pytest
import torch

from tests.mining.test_hard_negatives import negatives_of
from textdml.config import ConfigError, load_run_config
from textdml.evaluation.retrieval import encode_for_search
from textdml.index import SearchOptions, list_versions, search
from textdml.index.engine import Fusion
from textdml.mining import mine_hard_negatives
from textdml.mining.collection_search import open_collection_searcher
from textdml.mining.hard_negatives import mining_documents
from textdml.models import Embedder

EXACT = SearchOptions(exact=True)
SETTINGS = {"num_negatives": 2, "range_max": 6}


def searcher_for(model, engine, pairs, corpus, **kwargs):
    documents = mining_documents(pairs, corpus=corpus)
    return open_collection_searcher(model, engine, "train-docs", documents, search_options=EXACT,
                                    show_progress_bar=False, **kwargs)


def test_hybrid_negatives_come_from_the_fused_ranking_with_the_models_scores(engine, saved_model, pairs, corpus,
                                                                             tmp_path):
    model = Embedder.from_pretrained(saved_model)
    searcher = searcher_for(model, engine, pairs, corpus, mode="hybrid", sparse="bm25")
    (version,) = list_versions(engine, "train-docs")
    assert version.sparse is not None and version.sparse["kind"] == "bm25"  # indexed with its sparse vectors
    mined = mine_hard_negatives(pairs, model, corpus=corpus, searcher=searcher, output_dir=tmp_path,
                                show_progress_bar=False, **SETTINGS)
    assert mined.num_rows > 0
    window = SETTINGS["range_max"] + 2  # range_max + the most positives of an anchor
    for row in mined:
        (fused,) = search(model, engine, "train-docs", row["anchor"], top_k=window, mode="hybrid", exact=True)
        fused_texts = [hit.payload["text"] for hit in fused]
        negatives = [row["negative_1"], row["negative_2"]]
        assert set(negatives) <= set(fused_texts)
        anchor, *others = encode_for_search(model, [row["anchor"], row["positive"], *negatives], 8, False)
        torch.testing.assert_close(torch.tensor(row["scores"]), torch.stack(others) @ anchor, atol=1e-5, rtol=1e-5)
    recorded = searcher.settings()
    assert recorded["mode"] == "hybrid" and recorded["sparse"]["kind"] == "bm25" and recorded["fusion"]["method"] == "rrf"


def test_a_fusion_weighing_only_the_dense_leg_mines_the_dense_negatives(engine, saved_model, pairs, corpus):
    model = Embedder.from_pretrained(saved_model)
    dense = mine_hard_negatives(pairs, model, corpus=corpus, searcher=searcher_for(model, engine, pairs, corpus,
                                                                                   sparse="bm25"),
                                show_progress_bar=False, **SETTINGS)
    hybrid = mine_hard_negatives(pairs, model, corpus=corpus, searcher=searcher_for(
        model, engine, pairs, corpus, mode="hybrid", fusion=Fusion("rrf", (1.0, 0.0))), show_progress_bar=False,
        **SETTINGS)
    assert negatives_of(hybrid, 2) == negatives_of(dense, 2)
    only_bm25 = mine_hard_negatives(pairs, model, corpus=corpus, searcher=searcher_for(
        model, engine, pairs, corpus, mode="sparse"), show_progress_bar=False, **SETTINGS)
    assert negatives_of(only_bm25, 2) != negatives_of(dense, 2)  # BM25 ranks other documents high


def test_hybrid_mining_of_a_dense_collection_names_index_sparse(engine, saved_model, pairs, corpus):
    model = Embedder.from_pretrained(saved_model)
    searcher_for(model, engine, pairs, corpus)  # indexes a dense-only version
    with pytest.raises(ValueError, match=r"a hybrid search needs sparse vectors.*index\.sparse=bm25"):
        searcher_for(model, engine, pairs, corpus, mode="hybrid")


def test_mine_mode_needs_a_collection(tmp_path):
    with pytest.raises(ConfigError, match=r"mine\.mode=hybrid .*set mine\.collection"):
        load_run_config(None, ["train.path=x.jsonl", "mine.mode=hybrid"])
    with pytest.raises(ConfigError, match=r"mine\.mode must be"):
        load_run_config(None, ["train.path=x.jsonl", "mine.collection=docs", "mine.mode=fused"])
    config = load_run_config(None, ["train.path=x.jsonl", "mine.collection=docs", "mine.mode=hybrid",
                                    "index.sparse=bm25"])
    assert config.mine.mode == "hybrid" and config.index.sparse == "bm25"
