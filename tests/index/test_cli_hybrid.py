"""`textdml index` with index.sparse, `search --mode`, `eval --through-index` per mode, end to end, tiny model."""

from __future__ import annotations

import pytest

from tests.index.test_cli_index import recipe, run  # noqa: F401  (the recipe fixture)


@pytest.mark.parametrize("engine_kind", ["edge", "client"])
def test_hybrid_index_search_modes_and_eval_side_by_side(recipe, tiny_model_dir, tmp_path, capsys,  # noqa: F811
                                                         engine_kind):
    config, _ = recipe
    engine = f"index.engine={engine_kind}"
    code, out, _ = run(capsys, "index", "--config", config, "--model", tiny_model_dir, "index.sparse=bm25", engine)
    assert code == 0 and "with bm25 sparse vectors" in out
    code, out, _ = run(capsys, "collections", f"index.path={tmp_path / 'idx'}", engine)
    assert code == 0 and "+ BM25 (k=1.2" in out

    outputs = {}
    for mode in ("dense", "sparse", "hybrid", None):
        extra = ["--mode", mode] if mode else []
        code, out, err = run(capsys, "search", "--config", config, "--model", tiny_model_dir, "--query",
                             "water falling from clouds", "--top-k", "2", *extra, engine)
        assert code == 0, err
        outputs[mode] = out
    assert outputs["sparse"].splitlines()[2].endswith("water falling from clouds")  # every word matches
    assert outputs[None] == outputs["hybrid"]  # hybrid: the default on a hybrid collection
    code, out, _ = run(capsys, "search", "--config", config, "--model", tiny_model_dir, "--query", "tea",
                       "--mode", "hybrid", "index.fusion=dbsf", "index.fusion_weights=[1.0, 2.0]", engine)
    assert code == 0 and "a hot drink made from leaves" in out

    code, out, _ = run(capsys, "eval", "--config", config, "--model", tiny_model_dir, "--through-index", engine)
    assert code == 0
    header = next(line for line in out.splitlines() if "dense_" in line)
    assert header.split() == ["metric", "dense_", "sparse_", "hybrid_"]
    assert any(line.split()[:1] == ["ndcg@10"] and len(line.split()) == 4 for line in out.splitlines())


def test_sparse_search_of_a_dense_collection_and_a_dense_model_as_index_sparse(recipe, tiny_model_dir,  # noqa: F811
                                                                               tiny_embedder, tmp_path, capsys):
    config, _ = recipe
    assert run(capsys, "index", "--config", config, "--model", tiny_model_dir)[0] == 0
    code, _, err = run(capsys, "search", "--config", config, "--model", tiny_model_dir, "--query", "x",
                       "--mode", "sparse")
    assert code == 2 and "holds dense vectors only" in err and "index.sparse=bm25" in err
    dense_folder = tmp_path / "dense"
    tiny_embedder.save_pretrained(dense_folder)
    code, _, err = run(capsys, "index", "--config", config, "--model", tiny_model_dir, f"index.sparse={dense_folder}")
    assert code == 2 and "is a dense text embedding model" in err and "not a sparse model" in err


def test_bad_fusion_settings_are_config_errors(recipe, tiny_model_dir, capsys):  # noqa: F811
    config, _ = recipe
    code, _, err = run(capsys, "search", "--config", config, "--model", tiny_model_dir, "--query", "x",
                       "index.fusion_weights=[1.0]")
    assert code == 2 and "index.fusion_weights must be two non-negative numbers" in err
