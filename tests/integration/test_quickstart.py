from __future__ import annotations

import pytest


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path):
    """The README's first command, shortened: real MiniLM, real WordNet, real Qdrant collection."""
    from textdml.quickstart import run_quickstart

    results = run_quickstart(output_dir=str(tmp_path / "qs"), max_steps=20)
    assert results["fine_tuned"]["ndcg@10"] > results["base"]["ndcg@10"]
    for key, value in results["qdrant"].items():
        assert value == pytest.approx(results["fine_tuned"][key], abs=1e-3), key
