"""Prompts reach the index: documents are indexed with the "document" prompt, queries searched with "query"."""

from __future__ import annotations

from textdml.index import index_documents, search
from textdml.models import Embedder

PROMPTS = {"query": "query: ", "document": "passage: "}


def test_documents_and_queries_get_their_prompts(tiny_model_dir, engine, monkeypatch) -> None:
    model = Embedder.from_pretrained(tiny_model_dir, normalize=True, prompts=PROMPTS)
    prompts_seen: list[str] = []
    real_encode = model.encode

    def recording_encode(texts, *args, **kwargs):
        prompts_seen.append(kwargs.get("prompt", ""))
        return real_encode(texts, *args, **kwargs)

    monkeypatch.setattr(model, "encode", recording_encode)
    docs = [{"id": "a", "text": "a cat sat on the mat"}, {"id": "b", "text": "stock prices fell"}]
    index_documents(model, docs, engine, "docs", show_progress_bar=False)
    assert set(prompts_seen) == {"passage: "}
    prompts_seen.clear()
    hits = search(model, engine, "docs", "a cat", top_k=2)
    assert prompts_seen == ["query: "] and len(hits[0]) == 2
