from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("PIL")

from tests.fakes import HashingEncoder  # noqa: E402
from tests.fakes_vision import ColourDualEncoder, write_colour_images  # noqa: E402
from textdml.index import index_documents, list_versions, parse_filters, rollback, search  # noqa: E402
from textdml.index.qdrant import ensure_collection  # noqa: E402
from textdml.index.qdrant_images import (  # noqa: E402
    index_image_text,
    search_images_by_text,
    search_texts_by_image,
)
from textdml.index.versions import format_versions  # noqa: E402


class OtherColourEncoder(ColourDualEncoder):
    """The same vectors' shape, other weights: its vectors live in another space."""

    def identity(self):
        return {"model_name": "colour-other", "weights_sha256": "f" * 64}


class FailingColourEncoder(ColourDualEncoder):
    """Dies (not a row error) on its second chunk, as a run killed mid-way."""

    def __init__(self):
        self.chunks = 0

    def encode_images(self, images, **kwargs):
        self.chunks += 1
        if self.chunks == 2:
            raise RuntimeError("killed")
        return super().encode_images(images, **kwargs)


def index(model, rows, engine, collection="pairs", **kwargs):
    return index_image_text(model, rows, engine, collection, show_progress_bar=False, **kwargs)


def test_each_run_writes_a_version_searched_both_ways_through_the_alias(tmp_path, engine):
    rows = write_colour_images(tmp_path / "img")
    model = ColourDualEncoder()
    first = index(model, rows, engine)
    assert (first.written, first.skipped, first.points, first.live) == (len(rows), 0, len(rows), True)
    second = index(model, rows[:6], engine)
    assert second.version != first.version and second.replaced == first.version
    assert engine.aliases() == {"pairs": second.version} and engine.count(second.version) == 6
    (hits,) = search_images_by_text(model, engine, "pairs", ["something red"], top_k=3)
    assert all("red" in hit.payload["image"] for hit in hits)
    (hits,) = search_texts_by_image(model, engine, "pairs", [rows[3]["image"]], top_k=3)
    assert all("green" in hit.payload["text"] for hit in hits)
    versions = list_versions(engine, "pairs")
    assert [(v.name, v.points, v.live, v.status) for v in versions] == [
        (first.version, len(rows), False, "ready"), (second.version, 6, True, "ready")]
    assert "colour-fake" in format_versions(versions)
    assert {"id", "image", "text", "label"} <= set(versions[1].fields)
    assert rollback(engine, "pairs") == first.version
    (hits,) = search_images_by_text(model, engine, "pairs", ["something blue"], top_k=3)
    assert all("blue" in hit.payload["image"] for hit in hits)  # blue is only in the first version


def test_no_swap_leaves_the_live_version_serving(tmp_path, engine):
    rows = write_colour_images(tmp_path / "img")
    first = index(ColourDualEncoder(), rows, engine)
    second = index(ColourDualEncoder(), rows[:3], engine, swap=False)
    assert not second.live and engine.aliases() == {"pairs": first.version}


def test_in_place_mode_writes_the_plain_collection_and_skips_unchanged_rows(tmp_path, engine):
    rows = write_colour_images(tmp_path / "img")
    model = ColourDualEncoder()
    assert index(model, rows, engine, versioned=False).written == len(rows)
    report = index(model, rows, engine, versioned=False)
    assert (report.written, report.skipped, report.version) == (0, len(rows), "pairs")
    assert engine.aliases() == {} and engine.count("pairs") == len(rows)
    (hits,) = search_texts_by_image(model, engine, "pairs", [rows[0]["image"]], top_k=3)
    assert all("red" in hit.payload["text"] for hit in hits)


@pytest.mark.parametrize("versioned", [True, False])
def test_another_model_is_refused_on_search_and_in_place_index_unless_forced(tmp_path, engine, versioned):
    rows = write_colour_images(tmp_path / "img")
    index(ColourDualEncoder(), rows, engine, versioned=versioned)
    other = OtherColourEncoder()
    if versioned:  # a new version may hold another model: it goes live only by a swap
        assert not index(other, rows, engine, swap=False).live
    else:
        with pytest.raises(ValueError, match=r"indexed by colour-fake .* model given to index is colour-other"):
            index(other, rows, engine, versioned=versioned)
    for search_by, query in ((search_images_by_text, ["red"]), (search_texts_by_image, [rows[0]["image"]])):
        with pytest.raises(ValueError, match=r"indexed by colour-fake .* model given to search is colour-other.*--force"):
            search_by(other, engine, "pairs", query)
        with pytest.warns(UserWarning, match="--force"):
            assert len(search_by(other, engine, "pairs", query, top_k=2, force=True)[0]) == 2
    if not versioned:
        with pytest.warns(UserWarning, match="--force"):
            index(other, rows, engine, versioned=versioned, force=True)


def test_an_unfinished_version_is_resumed_and_published_once_complete(tmp_path, engine):
    rows = write_colour_images(tmp_path / "img")
    with pytest.raises(RuntimeError, match="killed"):
        index(FailingColourEncoder(), rows, engine, batch_size=4)
    (version,) = engine.list_collections()
    assert engine.aliases() == {} and engine.count(version) == 4  # the half-written version never went live
    report = index(ColourDualEncoder(), rows, engine, batch_size=4)
    assert (report.version, report.skipped, report.written, report.live) == (version, 4, len(rows) - 4, True)
    assert [v.status for v in list_versions(engine, "pairs")] == ["ready"]


def test_filters_apply_to_image_text_search(tmp_path, engine):
    rows = write_colour_images(tmp_path / "img")
    model = ColourDualEncoder()
    index(model, rows, engine)
    (hits,) = search_images_by_text(model, engine, "pairs", ["red"], top_k=12, filter=parse_filters(["label=blue"]))
    assert {hit.payload["label"] for hit in hits} == {"blue"}
    with pytest.raises(ValueError, match=r"filter on field\(s\) \['colour'\]"):
        search_texts_by_image(model, engine, "pairs", [rows[0]["image"]], filter=parse_filters(["colour=red"]))


def test_a_text_collection_is_not_overwritten(tmp_path, engine):
    rows = write_colour_images(tmp_path / "img")
    ensure_collection(engine, "docs", vector_size=3, similarity="cosine")
    with pytest.raises(ValueError, match="exists with size=3, distance=cosine, but the model needs named vectors "
                                         r"image \(size=3, distance=cosine\), text"):
        index(ColourDualEncoder(), rows, engine, "docs", versioned=False)
    with pytest.raises(ValueError, match=r"'docs' is a plain \(unversioned\) collection"):
        index(ColourDualEncoder(), rows, engine, "docs")
    assert engine.collection_exists("docs") and engine.list_collections() == ["docs"]


def test_text_and_image_text_versions_of_one_name_do_not_mix(tmp_path, engine):
    text = index_documents(HashingEncoder(embedding_dim=3), [{"id": "1", "text": "a red cat"}], engine, "pairs",
                           show_progress_bar=False)
    with pytest.raises(ValueError, match=r"writes named vectors image .* but collection 'pairs' \(live version"):
        index(ColourDualEncoder(), write_colour_images(tmp_path / "img"), engine)
    assert engine.list_collections() == [text.version]
    with pytest.raises(ValueError, match="has no vector 'image'; .*index it with an image-text model"):
        search_images_by_text(ColourDualEncoder(), engine, "pairs", "red")


def test_a_text_search_of_an_image_text_collection_says_what_it_holds(tmp_path, engine):
    index(ColourDualEncoder(), write_colour_images(tmp_path / "img"), engine)
    with pytest.raises(ValueError, match="has no vector ''; it holds named vectors image .* image-text model"):
        search(HashingEncoder(embedding_dim=3), engine, "pairs", "red")


def test_rows_need_image_paths_and_a_bad_row_leaves_no_version(tmp_path, engine):
    image = write_colour_images(tmp_path / "img", per_colour=1)[0]["image"]
    with pytest.raises(ValueError, match="row 1: 'image' must be an image file path.*got int; set image_field="):
        index(ColourDualEncoder(), [{"id": "0", "image": image, "text": "x"}, {"id": "1", "image": 3, "text": "x"}],
              engine)
    assert engine.list_collections() == [] and engine.aliases() == {}


def test_encode_batch_size_must_be_positive(engine):
    with pytest.raises(ValueError, match="encode_batch_size must be >= 1, got 0"):
        index(ColourDualEncoder(), [], engine, encode_batch_size=0)


INDEXER = textwrap.dedent("""
    import sys
    from tests.fakes_vision import ColourDualEncoder, write_colour_images
    from textdml.index import open_client
    from textdml.index.qdrant_images import index_image_text

    path, kind, folder = sys.argv[1], sys.argv[2], sys.argv[3]
    rows = write_colour_images(__import__("pathlib").Path(folder), per_colour=10)

    def stream():
        for number, row in enumerate(rows):
            if number == 24:
                print("killable", flush=True)
                __import__("time").sleep(60)
            yield row

    index_image_text(ColourDualEncoder(), stream(), open_client(path=path, engine=kind), "pairs", batch_size=4,
                     show_progress_bar=False)
""")


def test_kill_9_while_indexing_pairs_then_rerun_has_every_pair_once(tmp_path, engine_kind):
    path = tmp_path / "index"
    child = subprocess.Popen([sys.executable, "-c", INDEXER, str(path), engine_kind, str(tmp_path / "img")],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "killable"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    from textdml.index import open_client

    rows = write_colour_images(tmp_path / "img", per_colour=10)
    with open_client(path=path, engine=engine_kind) as engine:
        (version,) = engine.list_collections()
        assert engine.aliases() == {}
        stored = engine.count(version)
        assert 0 < stored < len(rows)
        report = index(ColourDualEncoder(), rows, engine, batch_size=4)
        assert report.version == version and report.skipped == stored and engine.aliases() == {"pairs": version}
        ids = [record.payload["id"] for record in engine.iterate(version)]
        assert sorted(ids) == sorted(row["id"] for row in rows)


def test_a_missing_image_file_names_its_row_and_creates_no_version(tmp_path, engine):
    rows = write_colour_images(tmp_path / "img")
    missing = str(tmp_path / "img" / "gone.png")
    rows[5] = {**rows[5], "image": missing}
    with pytest.raises(ValueError, match=rf"row 5: 'image': image file '{missing}' does not exist"):
        index(ColourDualEncoder(), rows, engine, batch_size=4)
    assert engine.list_collections() == [] and engine.aliases() == {}  # checked before a version was created
    with pytest.raises(ValueError, match=r"row 5: 'image': image file .*gone.png' does not exist"):
        index(ColourDualEncoder(), iter(rows), engine, batch_size=4)  # a stream: checked chunk by chunk
    assert list_versions(engine) == [] and engine.aliases() == {}  # its version was removed, not left building


def test_a_file_that_is_no_image_names_its_row(tmp_path, engine):
    rows = write_colour_images(tmp_path / "img")
    (tmp_path / "img" / "notes.png").write_text("not an image")
    rows[2] = {**rows[2], "image": str(tmp_path / "img" / "notes.png")}
    with pytest.raises(ValueError, match=r"row 2: 'image': cannot read the image file .*notes.png"):
        index(ColourDualEncoder(), rows, engine)
    assert engine.list_collections() == []


def test_a_missing_image_file_through_the_cli_is_one_line(tmp_path, monkeypatch, capsys):
    import json

    import textdml.models.loading
    from textdml.cli import main

    rows = write_colour_images(tmp_path / "img")
    rows[3] = {**rows[3], "image": "img/missing.png"}
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"train: {{path: {data}}}\nindex: {{collection: pairs, path: {tmp_path / 'idx'}}}\n")
    monkeypatch.setattr(textdml.models.loading, "load_model", lambda path, **_: ColourDualEncoder())
    assert main(["index", "--config", str(recipe), "--model", "colour", "--data", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == ("textdml index: error: row 3: 'image': image file 'img/missing.png' does not exist (relative "
                   "paths are read from the current folder); fix the path or drop the row")
    assert main(["collections", f"index.path={tmp_path / 'idx'}"]) == 0
    assert "no versioned collection" in capsys.readouterr().out
