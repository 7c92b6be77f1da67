from __future__ import annotations

import pytest

pytest.importorskip("PIL")

from tests.fakes_vision import ColourDualEncoder, write_colour_images  # noqa: E402
from textdml.index.qdrant import ensure_collection  # noqa: E402
from textdml.index.qdrant_images import (  # noqa: E402
    index_image_text,
    search_images_by_text,
    search_texts_by_image,
)


def test_index_search_both_ways_and_rerun(tmp_path, engine):
    rows = write_colour_images(tmp_path / "img")
    model = ColourDualEncoder()
    assert index_image_text(model, rows, engine, "pairs", show_progress_bar=False) == len(rows)
    assert index_image_text(model, rows, engine, "pairs", show_progress_bar=False) == 0  # nothing rewritten
    assert engine.count("pairs") == len(rows)
    (hits,) = search_images_by_text(model, engine, "pairs", ["something blue"], top_k=3)
    assert all("blue" in hit.payload["image"] for hit in hits)
    (hits,) = search_texts_by_image(model, engine, "pairs", [rows[0]["image"]], top_k=3)
    assert all("red" in hit.payload["text"] for hit in hits)


def test_a_text_collection_is_not_overwritten(tmp_path, engine):
    ensure_collection(engine, "docs", vector_size=3, similarity="cosine")
    with pytest.raises(ValueError, match="named vectors image and text"):
        index_image_text(ColourDualEncoder(), write_colour_images(tmp_path / "img"), engine, "docs",
                         show_progress_bar=False)
    assert engine.collection_exists("docs")


def test_rows_need_image_paths(engine):
    with pytest.raises(ValueError, match="row 0: 'image' must be an image file path"):
        index_image_text(ColourDualEncoder(), [{"id": "1", "image": 3, "text": "x"}], engine, "c",
                         show_progress_bar=False)
