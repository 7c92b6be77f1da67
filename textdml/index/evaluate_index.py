"""``textdml eval --through-index``: the retrieval metrics of the live collection as it serves
queries, beside recall@k of the index against exact search (what HNSW and quantization cost)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textdml.index.qdrant import open_index, search_options
from textdml.index.searching import evaluate_through_collection

if TYPE_CHECKING:
    from textdml.config import IndexConfig


def evaluate_live_index(model: Any, evaluator: Any, config: IndexConfig, force: bool = False) -> dict[str, float]:
    """Metrics through ``config.collection`` (prefixed ``index/``) and ``index/index_recall@k``.

    ``evaluator`` is the retrieval evaluator of the recipe (its queries and relevant documents);
    the collection must hold its corpus, e.g. indexed by ``textdml index`` without ``--data``.
    """
    if not hasattr(evaluator, "relevant_docs"):
        raise ValueError("--through-index needs a retrieval evaluation (pairs: queries and their documents); "
                         f"this recipe's eval data gives a {type(evaluator).__name__}")
    queries = dict(zip(evaluator.query_ids, evaluator.queries))
    with open_index(config, create=False) as engine:
        metrics = evaluate_through_collection(
            model, engine, config.collection, queries, evaluator.relevant_docs, evaluator.k_values,
            id_field=config.id_field, force=force or config.force, options=search_options(config),
            with_index_recall=True)
    print(f"\nthrough the index {config.collection!r} ({engine.location}):")
    for name, value in metrics.items():
        print(f"  {name:<22}{value:.4f}")
    return {f"index/{name}": value for name, value in metrics.items()}
