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
    # The run's card and report hold the same base-vs-fine-tuned table under the run's name.
    card = (tmp_path / "qs" / "model" / "final" / "README.md").read_text()
    assert "# quickstart: all-MiniLM-L6-v2 fine-tuned with InfoNCE on WordNet" in card
    base, tuned = results["base"]["ndcg@10"], results["fine_tuned"]["ndcg@10"]
    assert f"| NDCG@10 | {base:.4f} | {tuned:.4f} |" in card
    page = (tmp_path / "qs" / "model" / "report.html").read_text()
    assert "quickstart: all-MiniLM-L6-v2" in page and "step 0 (before training)" in page
    assert "Eval embeddings in 2-D" in page and "positive vs negative similarities" in page
