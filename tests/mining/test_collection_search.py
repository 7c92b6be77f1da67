"""Mining through a Qdrant collection, on both engines: parity with in-memory mining, reuse, identity, corpus."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from tests.mining.test_hard_negatives import negatives_of
from textdml.index import SearchOptions, ensure_collection, index_documents, list_versions
from textdml.index.engine import Point
from textdml.mining import mine_hard_negatives
from textdml.models import Embedder

EXACT = SearchOptions(exact=True)


@pytest.fixture(scope="module")
def other_model(saved_model, tmp_path_factory):
    """The same architecture with other weights: another model identity."""
    model = Embedder.from_pretrained(saved_model)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    path = tmp_path_factory.mktemp("other_model") / "other"
    model.save_pretrained(path)
    return path


def settings_of(folder) -> dict:
    return json.loads((folder / "mining_settings.json").read_text())


@pytest.mark.parametrize("settings", [{}, {"num_negatives": 2, "range_max": 8, "sampling_strategy": "random"}])
def test_exact_collection_search_gives_the_in_memory_negatives(engine, saved_model, pairs, corpus, settings,
                                                               tmp_path) -> None:
    model = Embedder.from_pretrained(saved_model)
    k = settings.get("num_negatives", 3)
    in_memory = mine_hard_negatives(pairs, model, corpus=corpus, show_progress_bar=False, **settings)
    through = mine_hard_negatives(pairs, model, corpus=corpus, collection="train-docs", engine=engine,
                                  search_options=EXACT, output_dir=tmp_path, show_progress_bar=False, **settings)
    assert negatives_of(through, k) == negatives_of(in_memory, k)
    torch.testing.assert_close(torch.tensor(through["scores"]), torch.tensor(in_memory["scores"]), atol=1e-5, rtol=1e-5)
    [version] = list_versions(engine, "train-docs")
    assert version.live and version.points == len(set(corpus) | set(pairs["positive"]))
    searched = settings_of(tmp_path)["collection"]
    assert searched["version"] == version.name and searched["indexed"] and searched["exact"]
    assert searched["searched_in_memory"] == 0


def test_rows_filled_with_random_documents_match_in_memory_mining_with_unscored_fillers(engine, saved_model, pairs,
                                                                                      corpus) -> None:
    model = Embedder.from_pretrained(saved_model)
    settings = {"num_negatives": 2, "range_max": 10, "absolute_margin": 0.0, "fill_with_random": True}
    in_memory = mine_hard_negatives(pairs, model, corpus=corpus, show_progress_bar=False, **settings)
    through = mine_hard_negatives(pairs, model, corpus=corpus, collection="train-docs", engine=engine,
                                  search_options=EXACT, show_progress_bar=False, **settings)
    assert negatives_of(through, 2) == negatives_of(in_memory, 2) and through.num_rows == len(pairs)
    ours, theirs = torch.tensor(through["scores"]), torch.tensor(in_memory["scores"])
    filled = ours.isnan()  # a collection's vectors are not in memory: fillers carry no score
    assert filled.any() and not theirs.isnan().any()
    torch.testing.assert_close(ours[~filled], theirs[~filled], atol=1e-5, rtol=1e-5)


def test_an_existing_collection_is_searched_without_indexing_again(engine, saved_model, pairs, corpus,
                                                                   tmp_path) -> None:
    model = Embedder.from_pretrained(saved_model)
    first = mine_hard_negatives(pairs, model, corpus=corpus, collection="train-docs", engine=engine,
                                output_dir=tmp_path / "first", show_progress_bar=False)
    again = mine_hard_negatives(pairs, model, corpus=corpus, collection="train-docs", engine=engine,
                                output_dir=tmp_path / "again", show_progress_bar=False)
    assert len(list_versions(engine, "train-docs")) == 1
    assert negatives_of(again, 3) == negatives_of(first, 3)
    assert settings_of(tmp_path / "first")["collection"]["indexed"]
    reused = settings_of(tmp_path / "again")["collection"]
    assert not reused["indexed"] and reused["version"] == settings_of(tmp_path / "first")["collection"]["version"]
    # The version searched is recorded, not fingerprinted: the second run resumes the first one's shards.
    assert settings_of(tmp_path / "again")["fingerprint"] == settings_of(tmp_path / "first")["fingerprint"]


def test_a_collection_of_another_model_is_an_error_unless_forced(engine, saved_model, other_model, pairs,
                                                                 corpus) -> None:
    theirs, ours = Embedder.from_pretrained(other_model), Embedder.from_pretrained(saved_model)
    mine_hard_negatives(pairs, theirs, corpus=corpus, collection="train-docs", engine=engine, show_progress_bar=False)
    both = rf"indexed by .*[(;] sha256 {theirs.weights_sha256()[:8]}.*given to mine is .*[(;] sha256 {ours.weights_sha256()[:8]}"
    with pytest.raises(ValueError, match=both + r".*pass --force"):
        mine_hard_negatives(pairs, ours, corpus=corpus, collection="train-docs", engine=engine, show_progress_bar=False)
    with pytest.warns(UserWarning, match=both + r".*going on because of --force"):
        mined = mine_hard_negatives(pairs, ours, corpus=corpus, collection="train-docs", engine=engine, force=True,
                                    show_progress_bar=False)
    assert mined.num_rows > 0 and len(list_versions(engine, "train-docs")) == 1  # searched as it is


def test_remining_replaces_the_runs_own_version_but_not_a_foreign_one(engine, saved_model, other_model, pairs,
                                                                      corpus, tmp_path) -> None:
    start, trained = Embedder.from_pretrained(saved_model), Embedder.from_pretrained(other_model)
    mine_hard_negatives(pairs, start, corpus=corpus, collection="train-docs", engine=engine,
                        output_dir=tmp_path / "step-0", show_progress_bar=False)
    own = settings_of(tmp_path / "step-0")["collection"]["version"]
    with pytest.raises(ValueError, match="was indexed by"):  # a version the run never mined from
        mine_hard_negatives(pairs, trained, corpus=corpus, collection="train-docs", engine=engine,
                            own_versions={"train-docs__00000000__20260101T000000000"}, show_progress_bar=False)
    with warnings.catch_warnings():  # the run's own earlier weights: no identity warning either
        warnings.filterwarnings("error", message=".*indexed by")
        mine_hard_negatives(pairs, trained, corpus=corpus, collection="train-docs", engine=engine,
                            own_versions={own}, output_dir=tmp_path / "step-2", show_progress_bar=False)
    versions = list_versions(engine, "train-docs")
    new = settings_of(tmp_path / "step-2")["collection"]
    assert len(versions) == 2 and new["indexed"] and new["version"] != own
    assert [v.name for v in versions if v.live] == [new["version"]]
    assert new["model"]["weights_sha256"] == trained.weights_sha256()
    # A resumed run mining again with the starting weights searches its own (no longer live) version.
    mine_hard_negatives(pairs, start, corpus=corpus, collection="train-docs", engine=engine,
                        own_versions={own, new["version"]}, output_dir=tmp_path / "resumed", show_progress_bar=False)
    resumed = settings_of(tmp_path / "resumed")
    assert resumed["collection"]["version"] == own and not resumed["collection"]["indexed"]
    assert resumed["fingerprint"] == settings_of(tmp_path / "step-0")["fingerprint"]
    assert [v.name for v in list_versions(engine, "train-docs") if v.live] == [new["version"]]


def test_a_collection_with_other_documents_joins_the_corpus_and_what_it_lacks_is_searched_beside_it(
        engine, saved_model, pairs, corpus, tmp_path) -> None:
    model = Embedder.from_pretrained(saved_model)
    extra = [f"{text} again" for text in corpus[:10]]  # only the collection holds these
    held = corpus[:40] + extra  # it lacks corpus[40:] and every positive
    rows = [{"id": f"d{i}", "text": text} for i, text in enumerate(held)]
    rows.append({"id": "twice", "text": corpus[0]})  # one text under two ids: one candidate
    index_documents(model, rows, engine, "docs", show_progress_bar=False)
    through = mine_hard_negatives(pairs, model, corpus=corpus, collection="docs", engine=engine,
                                  search_options=EXACT, output_dir=tmp_path, show_progress_bar=False)
    whole = mine_hard_negatives(pairs, model, corpus=corpus + extra, show_progress_bar=False)
    assert negatives_of(through, 3) == negatives_of(whole, 3)
    searched = settings_of(tmp_path)["collection"]
    missing = len(set(corpus[40:]) | set(pairs["positive"]))
    assert not searched["indexed"] and searched["points"] == len(rows) and searched["searched_in_memory"] == missing
    assert settings_of(tmp_path)["corpus_size"] == len(set(corpus + extra) | set(pairs["positive"]))
    assert len(list_versions(engine, "docs")) == 1  # nothing written into a collection the run did not create


def test_points_without_text_are_an_error_naming_the_field(engine, saved_model, pairs, corpus) -> None:
    model = Embedder.from_pretrained(saved_model)
    ensure_collection(engine, "vectors-only", vector_size=model.embedding_dim, similarity="cosine")
    engine.upsert("vectors-only", [Point("5b1f3a52-6f0e-4c55-9a4e-2d7c1f0b9e61", [1.0] * model.embedding_dim,
                                         {"id": "d0"})])
    with pytest.raises(ValueError, match="has no text in its 'text' payload field"):
        mine_hard_negatives(pairs, model, corpus=corpus, collection="vectors-only", engine=engine,
                            show_progress_bar=False)


def test_collection_needs_an_engine_and_no_searcher(saved_model, pairs, corpus) -> None:
    from textdml.mining import ExactSearcher

    model = Embedder.from_pretrained(saved_model)
    with pytest.raises(ValueError, match="needs engine="):
        mine_hard_negatives(pairs, model, corpus=corpus, collection="docs", show_progress_bar=False)
    with pytest.raises(ValueError, match="searcher= or collection=, not both"):
        mine_hard_negatives(pairs, model, corpus=corpus, collection="docs", engine=object(),
                            searcher=ExactSearcher(torch.zeros(1, 1)), show_progress_bar=False)
