from __future__ import annotations

import datetime as dt

import pytest

from tests.fakes import HashingEncoder, toy_corpus
from textdml.index import delete_version, index_documents, list_versions, rollback, search
from textdml.index.engine import CollectionOptions, VectorSpec
from textdml.index.versions import format_versions, new_metadata, version_name
from textdml.models.identity import ModelIdentity

COLLECTION = "docs"


def rows(num_docs=30, seed=0):
    return [{"id": doc_id, "text": text} for doc_id, text in toy_corpus(num_docs=num_docs, seed=seed).items()]


def index(engine, documents, encoder=None, **kwargs):
    return index_documents(encoder or HashingEncoder(), documents, engine, COLLECTION, batch_size=16,
                           show_progress_bar=False, **kwargs)


def test_each_run_writes_a_version_and_moves_the_alias(engine):
    first = index(engine, rows())
    second = index(engine, rows(num_docs=20))
    assert first.version != second.version and second.replaced == first.version
    assert engine.aliases() == {COLLECTION: second.version}
    assert engine.count(engine.resolve(COLLECTION)) == 20
    versions = list_versions(engine, COLLECTION)
    assert [(v.name, v.points, v.live, v.status) for v in versions] == [
        (first.version, 30, False, "ready"), (second.version, 20, True, "ready")]
    assert versions[1].identity.model_name == "fake/hashing-encoder"
    table = format_versions(versions)
    assert second.version in table and "fake/hashing-encoder" in table and "* " in table


def test_no_swap_leaves_the_live_version_serving(engine):
    first = index(engine, rows())
    second = index(engine, rows(num_docs=10), swap=False)
    assert not second.live and engine.aliases() == {COLLECTION: first.version}
    assert engine.count(engine.resolve(COLLECTION)) == 30


def test_rollback_points_the_alias_back_and_delete_guards_the_live_version(engine):
    first = index(engine, rows())
    second = index(engine, rows(num_docs=10))
    assert rollback(engine, COLLECTION) == first.version
    assert engine.aliases() == {COLLECTION: first.version}
    assert rollback(engine, COLLECTION, to=second.version) == second.version
    with pytest.raises(ValueError, match=r"is live \(alias docs\).*--force"):
        delete_version(engine, second.version)
    delete_version(engine, first.version)
    assert [v.name for v in list_versions(engine)] == [second.version]
    with pytest.raises(ValueError, match="no earlier complete version"):
        rollback(engine, COLLECTION)
    delete_version(engine, second.version, force=True)
    assert engine.aliases() == {} and engine.list_collections() == []


def test_rollback_of_an_unknown_collection_lists_what_exists(engine):
    index(engine, rows())
    with pytest.raises(ValueError, match=r"'nope' is not an alias.*existing aliases: docs -> docs__"):
        rollback(engine, "nope")


def test_a_new_version_may_hold_another_model_without_force(engine):
    """Blue/green: the new model's version is built beside the live one; checks stay where vectors meet."""
    first = index(engine, rows())
    other = HashingEncoder(embedding_dim=8, seed=3, model_name="fake/other")
    green = index(engine, rows(), encoder=other, swap=False)
    assert not green.live and engine.aliases() == {COLLECTION: first.version}
    with pytest.raises(ValueError, match=r"size=8 vectors but collection 'docs' .* holds size=16"):
        search(other, engine, COLLECTION, "cat")
    same_size = HashingEncoder(seed=3, model_name="fake/same-size")
    index(engine, rows(), encoder=same_size, swap=False)
    with pytest.raises(ValueError, match=r"indexed by fake/hashing-encoder .* model given to search is fake/same-size"):
        search(same_size, engine, COLLECTION, "cat")
    assert rollback(engine, COLLECTION, to=green.version) == green.version
    assert len(search(other, engine, COLLECTION, "cat", top_k=2)[0]) == 2
    with pytest.raises(ValueError, match=r"size=16 vectors but collection 'docs' .* holds size=8"):
        search(HashingEncoder(), engine, COLLECTION, "cat")
    blue = index(engine, rows())  # and back, still without force
    assert engine.aliases() == {COLLECTION: blue.version} and blue.replaced == green.version


def test_writing_in_place_with_another_model_is_still_refused(engine):
    index(engine, rows(), versioned=False)
    with pytest.raises(ValueError, match=r"indexed by fake/hashing-encoder.*fake/other.*--force"):
        index(engine, rows(), encoder=HashingEncoder(seed=3, model_name="fake/other"), versioned=False)


def test_search_with_another_model_names_both_and_force_goes_on(engine):
    index(engine, rows())
    other = HashingEncoder(seed=3, model_name="fake/other")
    with pytest.raises(ValueError, match=r"indexed by fake/hashing-encoder .* model given to search is fake/other"):
        search(other, engine, COLLECTION, "cat")
    with pytest.warns(UserWarning):
        assert len(search(other, engine, COLLECTION, "cat", top_k=2, force=True)[0]) == 2


def test_search_with_another_vector_size_names_both_sizes(engine):
    index(engine, rows())
    with pytest.raises(ValueError, match=r"size=8 vectors but collection 'docs' .* holds size=16"):
        search(HashingEncoder(embedding_dim=8), engine, COLLECTION, "cat")


def test_a_plain_collection_is_not_turned_into_an_alias(engine):
    index(engine, rows(), versioned=False)
    with pytest.raises(ValueError, match="plain \\(unversioned\\) collection"):
        index(engine, rows())


def test_versions_written_within_one_second_list_in_the_order_written(engine):
    second = dt.datetime(2026, 12, 2, 4, 30, 41, tzinfo=dt.timezone.utc)
    # The later version's model hash sorts first, so only the time in the name can order them.
    written = []
    for millisecond, short_id in ((268, "ffffffff"), (881, "00000000")):
        identity = ModelIdentity("m", short_id + "0" * 56, 4, "cosine")
        name = version_name(COLLECTION, identity, second.replace(microsecond=millisecond * 1000))
        metadata = {**new_metadata(COLLECTION, identity, "id", "text"), "created": second.isoformat()}
        engine.create_collection(name, {"": VectorSpec(4, "cosine")}, CollectionOptions(), metadata)
        written.append(name)
    assert [v.name for v in list_versions(engine, COLLECTION)] == written
