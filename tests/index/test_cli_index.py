"""`textdml index / search / eval --through-index / collections / rollback` end to end, tiny model."""

from __future__ import annotations

import json

import pytest

from tests.fakes import CLI_PAIRS as PAIRS
from textdml.cli import main


@pytest.fixture
def recipe(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"anchor": a, "positive": p}) + "\n" for a, p in PAIRS))
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"key": f"k{i}", "body": p, "lang": "en" if i % 2 else "fr"}) + "\n"
                            for i, (_, p) in enumerate(PAIRS)))
    path = tmp_path / "recipe.yaml"
    path.write_text(f"train: {{path: {pairs}}}\neval: {{data: {{path: {pairs}}}}}\n"
                    f"index: {{collection: docs, path: {tmp_path / 'idx'}}}\n")
    return path, docs


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_index_versions_search_rollback_and_eval_through_the_index(recipe, tiny_model_dir, tmp_path, capsys):
    config, docs = recipe
    code, out, _ = run(capsys, "index", "--config", config, "--model", tiny_model_dir)
    assert code == 0 and "'docs' now points at it" in out
    first = out.split(" into ")[1].split(" ")[0]
    code, out, _ = run(capsys, "index", "--config", config, "--model", tiny_model_dir, "--no-swap")
    assert code == 0 and "not live" in out
    second = out.split(" into ")[1].split(" ")[0]
    code, out, _ = run(capsys, "collections", f"index.path={tmp_path / 'idx'}")
    assert code == 0 and f"*  {first}" in out and f"   {second}" in out and "6" in out

    code, out, _ = run(capsys, "eval", "--config", config, "--model", tiny_model_dir, "--through-index")
    assert code == 0 and "index_recall@10" in out and "through the index 'docs'" in out

    code, out, _ = run(capsys, "rollback", "docs", f"index.path={tmp_path / 'idx'}", "--to", second)
    assert code == 0 and f"docs -> {second}" in out
    code, _, err = run(capsys, "collections", f"index.path={tmp_path / 'idx'}", "--delete", second)
    assert code == 2 and "is live (alias docs)" in err and "--force" in err
    code, out, _ = run(capsys, "collections", f"index.path={tmp_path / 'idx'}", "--delete", first)
    assert code == 0 and first not in out.split("\n", 1)[1]


def test_custom_fields_and_filters_from_the_command_line(recipe, tiny_model_dir, tmp_path, capsys):
    config, docs = recipe
    fields = ["index.id_field=key", "index.text_field=body", "index.collection=mine"]
    code, _, _ = run(capsys, "index", "--config", config, "--model", tiny_model_dir, "--data", docs, *fields)
    assert code == 0
    code, out, _ = run(capsys, "search", "--config", config, "--model", tiny_model_dir, "--query", "a cat",
                       "--top-k", "6", "--filter", "lang=en", *fields)
    shown = [line.split("  ", 2)[-1] for line in out.strip().splitlines()[1:]]
    assert code == 0 and sorted(shown) == sorted(p for i, (_, p) in enumerate(PAIRS) if i % 2)
    code, _, err = run(capsys, "search", "--config", config, "--model", tiny_model_dir, "--query", "a cat",
                       "--filter", "language=en", *fields)
    assert code == 2 and "textdml search: error: filter on field(s) ['language']" in err


def test_search_on_a_mistyped_path_is_an_error_and_creates_nothing(recipe, tiny_model_dir, tmp_path, capsys):
    config, _ = recipe
    run(capsys, "index", "--config", config, "--model", tiny_model_dir)
    code, _, err = run(capsys, "search", "--config", config, "--model", tiny_model_dir, "--query", "x",
                       f"index.path={tmp_path / 'ixd'}")
    assert code == 2 and "does not exist" in err and "'idx'" in err and not (tmp_path / "ixd").exists()
    code, _, err = run(capsys, "search", "--config", config, "--model", tiny_model_dir, "--query", "x",
                       "index.collection=dcos")
    assert code == 2 and "no collection or alias 'dcos'" in err and "docs -> docs__" in err


def test_index_dim_and_the_storage_table_from_the_command_line(recipe, tiny_model_dir, tmp_path, capsys):
    config, _ = recipe
    code, out, _ = run(capsys, "index", "--config", config, "--model", tiny_model_dir, "index.dim=8")
    assert code == 0 and "vectors cut to 8 of 32 coordinates" in out
    code, out, _ = run(capsys, "collections", f"index.path={tmp_path / 'idx'}")
    assert code == 0 and "32-d cut to 8" in out
    code, out, _ = run(capsys, "search", "--config", config, "--model", tiny_model_dir, "--query", "a cat")
    assert code == 0 and len(out.strip().splitlines()) == 1 + 5  # the query, then its hits: no dim given twice
    code, _, err = run(capsys, "search", "--config", config, "--model", tiny_model_dir, "--query", "a cat",
                       "index.dim=4")
    assert code == 2 and "index.dim=4, but collection" in err and "holds 8-d vectors" in err
    code, out, _ = run(capsys, "eval", "--config", config, "--model", tiny_model_dir, "--through-index")
    assert code == 0 and "index_recall@10" in out

    code, out, _ = run(capsys, "eval", "--config", config, "--model", tiny_model_dir, "--dims", "32,8",
                       "--quantizations", "none,binary")
    table = out[out.index("storage vs quality"):].splitlines()
    assert code == 0 and "Qdrant Edge, a temporary folder" in table[0]
    assert [line.split()[:3] for line in table[2:]] == [["32", "none", "128"], ["32", "binary", "4"],
                                                         ["8", "none", "32"], ["8", "binary", "1"]]
    exact_ndcg = next(line.split()[1] for line in out.splitlines() if line.startswith("ndcg@10 "))
    assert table[2].split()[3] == exact_ndcg  # full size, no quantization: the plain evaluator's nDCG@10

    code, _, err = run(capsys, "eval", "--config", config, "--model", tiny_model_dir, "--dims", "64")
    assert code == 2 and "--dims (dims=)=64 is larger than the model's embedding size 32" in err
    with pytest.raises(SystemExit):
        run(capsys, "eval", "--config", config, "--model", tiny_model_dir, "--quantizations", "none,int4")
    assert "--quantizations: unknown ['int4']; choose among none, scalar, binary, product" in capsys.readouterr().err
