from __future__ import annotations

import pytest
from qdrant_client import models

from tests.fakes import HashingEncoder, toy_corpus
from textdml.index import CollectionOptions, index_documents, parse_filters, search
from textdml.index.filters import filter_fields

COLLECTION = "docs"


def rows():
    corpus = toy_corpus(num_docs=60)
    return [{"id": doc_id, "text": text, "lang": "en" if i % 3 else "fr", "year": 2000 + i % 5, "draft": i % 2 == 0}
            for i, (doc_id, text) in enumerate(corpus.items())]


def test_parse_filters_reads_values_as_yaml():
    parsed = parse_filters(["lang=en", "year=2020", "draft=true", "tags=[a, b]"])
    values = [c.match for c in parsed.must]
    assert values[0].value == "en" and values[1].value == 2020 and values[2].value is True
    assert values[3].any == ["a", "b"]
    assert filter_fields(parsed) == {"lang", "year", "draft", "tags"}
    with pytest.raises(ValueError, match="--filter 'lang' must look like field=value"):
        parse_filters(["lang"])


@pytest.mark.parametrize("options", [CollectionOptions(), CollectionOptions(payload_indexes={"lang": "keyword",
                                                                                             "year": "integer"})],
                         ids=["plain", "payload_indexes"])
def test_search_keeps_only_matching_documents(engine, options):
    documents = rows()
    index_documents(HashingEncoder(), documents, engine, COLLECTION, show_progress_bar=False, options=options)
    hits = search(HashingEncoder(), engine, COLLECTION, documents[0]["text"], top_k=50,
                  filter=parse_filters(["lang=en", "draft=false"]))[0]
    expected = {d["id"] for d in documents if d["lang"] == "en" and not d["draft"]}
    assert {hit.doc_id for hit in hits} == expected
    in_range = models.Filter(must=[models.FieldCondition(key="year", range=models.Range(gte=2003))],
                             must_not=[models.FieldCondition(key="lang", match=models.MatchValue(value="fr"))])
    hits = search(HashingEncoder(), engine, COLLECTION, "cat", top_k=60, filter=in_range)[0]
    assert {hit.doc_id for hit in hits} == {d["id"] for d in documents if d["year"] >= 2003 and d["lang"] != "fr"}


def test_a_filter_on_a_missing_field_is_an_error_naming_the_fields(engine):
    index_documents(HashingEncoder(), rows(), engine, COLLECTION, show_progress_bar=False)
    with pytest.raises(ValueError, match=r"field\(s\) \['language'\] that no document.*'lang'"):
        search(HashingEncoder(), engine, COLLECTION, "cat", filter=parse_filters(["language=en"]))


@pytest.mark.parametrize("quantization", ["scalar", "binary", "product"])
def test_quantized_collections_with_hnsw_still_find_each_document(engine, quantization):
    documents = rows()
    options = CollectionOptions(quantization=quantization, hnsw_threshold=10, hnsw_m=8, hnsw_ef_construct=32)
    report = index_documents(HashingEncoder(), documents, engine, COLLECTION, show_progress_bar=False,
                             options=options)
    assert report.hnsw_built == (engine.kind == "edge")
    texts = [d["text"] for d in documents[:20]]
    hits = search(HashingEncoder(), engine, COLLECTION, texts, top_k=1)
    assert sum(h[0].doc_id == d["id"] for h, d in zip(hits, documents)) >= 18  # rescoring with the originals
