"""`textdml index / search / collections`: misleading output turned into right answers or one-line errors (issue 20)."""

from __future__ import annotations

import json

import pytest

from textdml.cli import main


@pytest.fixture
def recipe(tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document number {i}"}) + "\n" for i in range(6)))
    path = tmp_path / "recipe.yaml"
    path.write_text(f"train: {{path: {docs}}}\nindex: {{collection: docs, path: {tmp_path / 'idx'}}}\n")
    return path, docs


@pytest.fixture(scope="module")
def other_model(tmp_path_factory, tiny_model_dir) -> str:
    """Another model: the tiny BERT with an 8-d projection on top."""
    from textdml.models import Embedder

    folder = tmp_path_factory.mktemp("other") / "projected"
    return str(Embedder.from_pretrained(tiny_model_dir, dense_dim=8).save_pretrained(folder))


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def error_line(err: str, verb: str) -> str:
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith(f"textdml {verb}: error: ") and "Traceback" not in err, err
    return lines[-1]


def test_a_new_model_indexes_a_new_version_without_force(recipe, tiny_model_dir, other_model, tmp_path, capsys):
    config, docs = recipe
    assert run(capsys, "index", "--config", config, "--model", tiny_model_dir, "--data", docs)[0] == 0
    code, out, err = run(capsys, "index", "--config", config, "--model", other_model, "--data", docs, "--no-swap")
    assert code == 0 and "not live" in out, err
    code, out, err = run(capsys, "index", "--config", config, "--model", other_model, "--data", docs)
    assert code == 0 and "'docs' now points at it" in out, err
    code, _, err = run(capsys, "search", "--config", config, "--model", tiny_model_dir, "--query", "x")
    assert code == 2 and "holds size=8" in error_line(err, "search")  # where vectors meet, models are still checked


@pytest.mark.parametrize("top_k", ["0", "-1", "two"])
def test_top_k_must_be_a_positive_integer(recipe, tiny_model_dir, capsys, top_k):
    config, docs = recipe
    with pytest.raises(SystemExit) as exit_info:
        run(capsys, "search", "--config", config, "--model", tiny_model_dir, "--query", "x", "--top-k", top_k)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "textdml search: error: argument --top-k: must be a positive integer" in err


def test_top_k_is_checked_by_the_library_too(engine, tiny_embedder):
    from textdml.index import index_documents, search

    index_documents(tiny_embedder, [{"id": "a", "text": "a cat"}], engine, "docs", show_progress_bar=False)
    for top_k in (0, -1):
        with pytest.raises(ValueError, match=rf"top_k \(--top-k\) must be a positive integer \(1 or more\), got {top_k}"):
            search(tiny_embedder, engine, "docs", "a cat", top_k=top_k)


def test_an_api_key_with_an_embedded_index_is_an_error(recipe, tiny_model_dir, tmp_path, capsys):
    config, docs = recipe
    code, _, err = run(capsys, "index", "--config", config, "--model", tiny_model_dir, "--data", docs,
                       "index.api_key=s3cr3t-key")
    line = error_line(err, "index")
    assert code == 2 and "index.api_key is set" in line and "index.url" in line and "s3cr3t-key" not in err
    assert not (tmp_path / "idx").exists()  # nothing was written
    code, _, err = run(capsys, "collections", f"index.path={tmp_path / 'idx'}", "index.api_key=s3cr3t-key")
    assert code == 2 and "index.api_key is set" in error_line(err, "collections")


def test_collections_names_an_unknown_collection_and_suggests_one(recipe, tiny_model_dir, tmp_path, capsys):
    config, docs = recipe
    run(capsys, "index", "--config", config, "--model", tiny_model_dir, "--data", docs)
    index = f"index.path={tmp_path / 'idx'}"
    code, _, err = run(capsys, "collections", index, "--collection", "doc")
    line = error_line(err, "collections")
    assert code == 2 and "no versioned collection 'doc'" in line and "did you mean 'docs'?" in line
    code, _, err = run(capsys, "collections", index, "--collection", "zzz")
    line = error_line(err, "collections")
    assert code == 2 and "'zzz'" in line and "versioned collections there: docs" in line and "did you mean" not in line
    code, out, _ = run(capsys, "collections", index, "--collection", "docs")
    assert code == 0 and "docs__" in out


def test_an_uncached_hub_model_offline_gets_hub_advice_not_index_url(recipe, tiny_model_dir, monkeypatch, capsys):
    config, docs = recipe
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for verb, extra in (("index", ["--data", docs]), ("search", ["--query", "x"])):
        if verb == "search":  # the index exists, so search gets as far as loading the model
            run(capsys, "index", "--config", config, "--model", tiny_model_dir, "--data", docs)
        code, _, err = run(capsys, verb, "--config", config, "--model", "textdml-tests/not-cached-model", *extra)
        line = error_line(err, verb)
        assert code == 2 and "'textdml-tests/not-cached-model'" in line and "index.url" not in line
        assert "local folder" in line


def test_hub_failures_without_textdml_message_get_hub_advice():
    from huggingface_hub.errors import OfflineModeIsEnabled

    from textdml.errors import explain

    message = explain(OfflineModeIsEnabled("Cannot reach https://huggingface.co/api/models/x: offline mode is enabled"))
    assert "Hugging Face Hub" in message and "index.url" not in message and "local folder" in message


PROMPTS = {"query": "query: ", "document": "passage: "}


def test_recipe_prompts_reach_index_and_search(recipe, tiny_model_dir, tmp_path, capsys):
    import numpy as np

    from textdml.cli import run_search
    from textdml.config import load_run_config
    from textdml.index import open_client
    from textdml.index.documents import point_id
    from textdml.models import Embedder

    plain, docs = recipe
    with_prompts = tmp_path / "prompts.yaml"
    with_prompts.write_text(plain.read_text() + f"model: {{prompts: {json.dumps(PROMPTS)}}}\n")
    code, _, err = run(capsys, "index", "--config", with_prompts, "--model", tiny_model_dir, "--data", docs)
    assert code == 0, err
    model = Embedder.from_pretrained(tiny_model_dir)

    def unit(texts):
        vectors = np.asarray(model.encode(texts, convert_to="numpy"), dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    with open_client(path=tmp_path / "idx", create=False) as engine:
        (stored,) = engine.retrieve(engine.resolve("docs"), [point_id("d0")], with_vectors=True)
        assert engine.collection_info(engine.resolve("docs")).metadata["identity"]["prompts"] == PROMPTS
    stored = np.asarray(stored.vector, dtype=np.float32)
    assert np.allclose(stored, unit(["passage: document number 0"])[0], atol=1e-5)  # the document prompt
    assert not np.allclose(stored, unit(["document number 0"])[0], atol=1e-3)

    hits = run_search(load_run_config(str(with_prompts), []), str(tiny_model_dir), ["number 0"], top_k=6)
    scores = {hit.doc_id: hit.score for hit in hits[0][1]}
    query = unit(["query: number 0"])[0]  # the query prompt
    expected = {f"d{i}": float(unit([f"passage: document number {i}"])[0] @ query) for i in range(6)}
    assert scores == pytest.approx(expected, abs=1e-4)
    code, _, err = run(capsys, "search", "--config", plain, "--model", tiny_model_dir, "--query", "x")
    assert code == 2 and "prompts" in error_line(err, "search")  # without the prompts: other vectors, refused


def test_prompts_for_an_image_text_model_are_an_error(recipe, tmp_path, capsys, monkeypatch):
    import textdml.models.loading
    from tests.fakes_vision import ColourDualEncoder

    monkeypatch.setattr(textdml.models.loading, "load_model", lambda path, **_: ColourDualEncoder())
    plain, docs = recipe
    with_prompts = tmp_path / "prompts.yaml"
    with_prompts.write_text(plain.read_text() + f"model: {{prompts: {json.dumps(PROMPTS)}}}\n")
    code, _, err = run(capsys, "index", "--config", with_prompts, "--model", "colour", "--data", docs)
    assert code == 2 and "model.prompts is set, but colour is an image-text model" in error_line(err, "index")
