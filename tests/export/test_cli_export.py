"""`textdml export`, then `textdml index / search / eval` encoding with model.backend=onnx (tiny model)."""

from __future__ import annotations

import json

import pytest

from tests.fakes import CLI_PAIRS as PAIRS
from textdml.cli import main


@pytest.fixture
def recipe(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"anchor": a, "positive": p}) + "\n" for a, p in PAIRS))
    path = tmp_path / "recipe.yaml"
    path.write_text(f"train: {{path: {pairs}}}\neval: {{data: {{path: {pairs}}}}}\n"
                    f"index: {{collection: docs, path: {tmp_path / 'idx'}}}\n")
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_export_then_index_search_and_eval_with_the_onnx_backend(recipe, tiny_model_dir, tmp_path, capsys):
    export = tmp_path / "onnx"
    code, out, _ = run(capsys, "export", tiny_model_dir, "--format", "onnx", "--output", export)
    assert code == 0 and f"--model {export} model.backend=onnx" in out
    onnx = ["model.backend=onnx"]
    code, out, _ = run(capsys, "index", "--config", recipe, "--model", export, *onnx)
    assert code == 0 and "indexed 6 documents" in out
    code, out, _ = run(capsys, "search", "--config", recipe, "--model", export, "--query", "a young cat", *onnx)
    assert code == 0 and out.split("\n")[2].strip().endswith("a young cat")  # the document itself comes first
    # The torch weights of the same folder are another identity: that collection is not theirs.
    code, _, err = run(capsys, "search", "--config", recipe, "--model", export, "--query", "a young cat")
    assert code == 2 and "--force" in err
    results = {}
    for backend in ("torch", "onnx"):
        code, out, _ = run(capsys, "eval", "--config", recipe, "--model", export, f"model.backend={backend}")
        assert code == 0
        results[backend] = out
    assert results["onnx"] == results["torch"]  # float32 ONNX: the same rankings, the same metrics
