"""scripts/check_hybrid.py: its per-query nDCG is the evaluators' and its paired interval is right."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from textdml.evaluation.retrieval import compute_metrics

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_hybrid.py"


@pytest.fixture(scope="module")
def check_hybrid():
    spec = importlib.util.spec_from_file_location("check_hybrid", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_per_query_ndcg_averages_to_the_evaluators_ndcg(check_hybrid):
    rankings = {"q1": ["d3", "d1", "d2"], "q2": ["d9", "d8", "d7", "d6"], "q3": ["d5"]}
    relevant = {"q1": {"d1", "d2"}, "q2": {"d6"}, "q3": {"d4"}}
    per_query = [check_hybrid.ndcg_at_10(rankings[q], relevant[q]) for q in rankings]
    hits = {q: [(doc, 1.0 / (rank + 1)) for rank, doc in enumerate(docs)] for q, docs in rankings.items()}
    assert np.mean(per_query) == pytest.approx(compute_metrics(hits, relevant)["ndcg@10"])
    assert per_query[2] == 0.0


def test_paired_interval_of_a_constant_gain_is_that_gain(check_hybrid):
    a = np.full((2, 50), 0.7)
    mean, low, high = check_hybrid.paired_interval(a, a - 0.1)
    assert (mean, low, high) == pytest.approx((0.1, 0.1, 0.1))


def test_paired_interval_pairs_by_query(check_hybrid):
    # Two rankers with very different per-query scores but a small, consistent gain: paired, the
    # interval excludes zero; unpaired noise of the same size would not.
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, size=(3, 400))
    mean, low, high = check_hybrid.paired_interval(base + 0.01, base)
    assert low > 0 and mean == pytest.approx(0.01)
    mean, low, high = check_hybrid.paired_interval(rng.permuted(base, axis=1), base)
    assert low < 0 < high
