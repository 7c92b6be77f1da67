from __future__ import annotations

import pytest

pytest.importorskip("PIL")

from tests.fakes_vision import ColourDualEncoder, write_colour_images  # noqa: E402
from textdml.index.qdrant import ensure_collection, open_client  # noqa: E402
from textdml.index.qdrant_images import (  # noqa: E402
    index_image_text,
    search_images_by_text,
    search_texts_by_image,
)


def test_index_search_both_ways_and_rerun(tmp_path):
    rows = write_colour_images(tmp_path / "img")
    client = open_client(path=str(tmp_path / "qdrant"))
    model = ColourDualEncoder()
    assert index_image_text(model, rows, client, "pairs", show_progress_bar=False) == len(rows)
    assert index_image_text(model, rows, client, "pairs", show_progress_bar=False) == 0  # nothing rewritten
    assert client.count("pairs").count == len(rows)
    (hits,) = search_images_by_text(model, client, "pairs", ["something blue"], top_k=3)
    assert all("blue" in hit.payload["image"] for hit in hits)
    (hits,) = search_texts_by_image(model, client, "pairs", [rows[0]["image"]], top_k=3)
    assert all("red" in hit.payload["text"] for hit in hits)


def test_a_text_collection_is_not_overwritten(tmp_path):
    client = open_client(path=str(tmp_path / "qdrant"))
    ensure_collection(client, "docs", vector_size=3, similarity="cosine")
    with pytest.raises(ValueError, match="named vectors image and text"):
        index_image_text(ColourDualEncoder(), write_colour_images(tmp_path / "img"), client, "docs",
                         show_progress_bar=False)
    assert client.collection_exists("docs")


def test_rows_need_image_paths(tmp_path):
    client = open_client(path=str(tmp_path / "qdrant"))
    with pytest.raises(ValueError, match="row 0: 'image' must be an image file path"):
        index_image_text(ColourDualEncoder(), [{"id": "1", "image": 3, "text": "x"}], client, "c",
                         show_progress_bar=False)
