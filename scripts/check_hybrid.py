"""Dense vs sparse vs hybrid search through a real collection, for groups of trained models, with paired intervals.

Each model is indexed (dense + ``index.sparse``, BM25 by default; Qdrant Edge in a temporary
folder) with the eval corpus of the recipe, and every eval query is searched three ways: the dense leg, the sparse leg and their fusion
(``index.fusion`` / ``index.fusion_weights`` of the recipe). A group of models (one per training
seed) gives one row per search mode; the differences are paired by query and seed, with a 95 %
bootstrap interval that resamples both. Example (models trained with ``textdml train`` at two seeds):

    python scripts/check_hybrid.py --config recipes/retrieval/minilm_hybrid_wordnet.yaml \\
        --model base=$MINILM --model plain=runs/plain_s0/final,runs/plain_s1/final \\
        --model hybrid=runs/hybrid_s0/final,runs/hybrid_s1/final \\
        --compare hybrid/hybrid:plain/hybrid --compare plain/hybrid:plain/dense
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODES = ("dense", "sparse", "hybrid")


def ndcg_at_10(ranked: list[str], relevant: set[str]) -> float:
    """Binary-relevance nDCG@10 of one query (the definition of the project's evaluators)."""
    gain = sum(1 / math.log2(rank + 2) for rank, doc in enumerate(ranked[:10]) if doc in relevant)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(len(relevant), 10)))
    return gain / ideal


def per_query_ndcg(folder: str, config, evaluator) -> dict[str, np.ndarray]:
    """Search mode -> nDCG@10 of every eval query, for the model in ``folder``."""
    from textdml.index import open_client
    from textdml.index.indexing import index_documents
    from textdml.index.qdrant import fusion_settings
    from textdml.index.searching import encode_queries, open_target, query_sparse_source, search_encoded
    from textdml.models import Embedder

    model = Embedder.from_pretrained(folder)
    documents = [{"id": str(doc_id), "text": text} for doc_id, text in zip(evaluator.corpus_ids, evaluator.corpus)]
    query_ids = [qid for qid in evaluator.query_ids if evaluator.relevant_docs.get(qid)]
    texts = dict(zip(evaluator.query_ids, evaluator.queries))
    with tempfile.TemporaryDirectory() as folder_of_index, open_client(path=folder_of_index) as engine:
        index_documents(model, documents, engine, "corpus", sparse=config.index.sparse or "bm25",
                        show_progress_bar=False)
        target = open_target(engine, "corpus", model)
        source = query_sparse_source(target, None)
        encoded = encode_queries(model, [texts[qid] for qid in query_ids], target, MODES, source)
        scores = {}
        for mode in MODES:
            hits = search_encoded(engine, target, mode, encoded, 10, exact=True, fusion=fusion_settings(config.index))
            scores[mode] = np.array([ndcg_at_10([hit.doc_id for hit in found], {str(d) for d in evaluator.relevant_docs[qid]})
                                     for qid, found in zip(query_ids, hits, strict=True)])
    return scores


def paired_interval(a: np.ndarray, b: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``a - b`` (``(seeds, queries)``, paired) and its 95 % bootstrap interval over seeds and queries."""
    diff = a - b
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, diff.shape[0], size=(resamples, diff.shape[0]))
    queries = rng.integers(0, diff.shape[1], size=(resamples, diff.shape[1]))
    means = np.array([diff[s][:, q].mean() for s, q in zip(seeds, queries)])
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the recipe whose eval data and index.* settings are used")
    parser.add_argument("--model", action="append", required=True, metavar="NAME=FOLDER[,FOLDER...]",
                        help="a group of saved models, one per seed (repeatable)")
    parser.add_argument("--compare", action="append", default=[], metavar="GROUP/MODE:GROUP/MODE",
                        help="a paired difference to print (default: each group's hybrid against its dense)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    from textdml.config import load_run_config
    from textdml.evaluation.build import build_evaluator

    config = load_run_config(args.config, args.overrides)
    evaluator = build_evaluator(config.eval)
    groups: dict[str, dict[str, np.ndarray]] = {}
    for spec in args.model:
        name, _, folders = spec.partition("=")
        runs = [per_query_ndcg(folder, config, evaluator) for folder in folders.split(",")]
        groups[name] = {mode: np.stack([run[mode] for run in runs]) for mode in MODES}
        print(f"{name}: " + "  ".join(f"{mode} {groups[name][mode].mean():.4f}" for mode in MODES), flush=True)

    fusion = config.index.fusion + (f" weights {config.index.fusion_weights}" if config.index.fusion_weights else "")
    sparse = config.index.sparse or "bm25"
    print(f"\nnDCG@10 through the index ({len(evaluator.query_ids)} queries; sparse = {sparse}; hybrid = {fusion})")
    print(f"{'models':<12}{'seeds':>6}" + "".join(f"{mode:>9}" for mode in MODES))
    for name, scores in groups.items():
        print(f"{name:<12}{scores['dense'].shape[0]:>6}" + "".join(f"{scores[mode].mean():>9.4f}" for mode in MODES))
    comparisons = args.compare or [f"{name}/hybrid:{name}/dense" for name in groups]
    print("\npaired difference, 95 % bootstrap interval over queries and seeds")
    for comparison in comparisons:
        left, right = comparison.split(":")
        a, b = (groups[side.split("/")[0]][side.split("/")[1]] for side in (left, right))
        mean, low, high = paired_interval(a, b)
        print(f"  {left} - {right}: {mean:+.4f} [{low:+.4f}, {high:+.4f}]")


if __name__ == "__main__":
    main()
