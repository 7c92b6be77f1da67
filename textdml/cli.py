"""``textdml <verb>``: parses arguments, builds the config, calls library functions. Nothing more."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from textdml.config import ConfigError, RunConfig, load_run_config


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--config", required=required, help="a recipe YAML under recipes/")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. training.batch_size=64")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textdml", description="Deep metric learning for text embeddings.")
    verbs = parser.add_subparsers(dest="verb", required=True)

    train = verbs.add_parser("train", help="train an embedder from a recipe")
    add_config_arguments(train)

    evaluate = verbs.add_parser("eval", help="evaluate a saved model on the recipe's eval data")
    evaluate.add_argument("--model", required=True, help="a saved model folder or Hub id")
    add_config_arguments(evaluate)

    index = verbs.add_parser("index", help="encode documents into a Qdrant collection")
    index.add_argument("--model", required=True)
    index.add_argument("--data", help="documents (jsonl/csv/parquet or textdml:...); default: the eval corpus")
    add_config_arguments(index)

    search = verbs.add_parser("search", help="query a Qdrant collection")
    search.add_argument("--model", required=True)
    search.add_argument("--query", "--text", dest="query", action="append", default=[],
                        help="query text (repeatable); with an image-text model it returns images")
    search.add_argument("--image", action="append", default=[],
                        help="query image path (repeatable; image-text models): returns captions")
    search.add_argument("--top-k", type=int, default=5)
    add_config_arguments(search)

    check = verbs.add_parser("check", help="preflight: check data, loss, margins and memory before training")
    add_config_arguments(check)

    report = verbs.add_parser("report", help="write a run folder's HTML report (plots of loss, metrics, health)")
    report.add_argument("run_dir", help="a training.output_dir")
    report.add_argument("--output", help="where to write the page (default: <run_dir>/report.html)")

    quick = verbs.add_parser("quickstart", help="train -> evaluate -> index -> search on WordNet, offline")
    quick.add_argument("--output-dir", default="runs/quickstart")
    quick.add_argument("--max-steps", type=int, default=None)
    return parser


def run_train(config: RunConfig) -> dict[str, Any]:
    from textdml.evaluation.build import build_evaluator
    from textdml.training.loop import train

    result = train(config, evaluator=build_evaluator(config.eval))
    return {"final_model": str(result.final_model), "best_model": str(result.best_model) if result.best_model else None,
            "steps": result.global_step}


def run_eval(config: RunConfig, model_path: str) -> dict[str, float]:
    from textdml.evaluation.build import build_evaluator
    from textdml.evaluation.retrieval import format_table
    from textdml.models.loading import load_model

    evaluator = build_evaluator(config.eval)
    if evaluator is None:
        raise ConfigError("the recipe has no eval.data: name held-out data to evaluate on")
    results = evaluator(load_model(model_path))
    print(format_table(results))
    return results


def open_index(config: RunConfig):
    from textdml.index.qdrant import open_client

    return open_client(path=None if config.index.url else config.index.path, url=config.index.url,
                       api_key=config.index.api_key)


def run_index(config: RunConfig, model_path: str, data: str | None) -> int:
    from textdml.data.loading import load_data
    from textdml.evaluation.build import load_eval_dataset, retrieval_task_from_pairs
    from textdml.index.qdrant import index_documents
    from textdml.models.loading import load_model

    idx = config.index
    model = load_model(model_path)
    if data is None and config.eval.data is None:
        raise ConfigError("no documents: pass --data, or give the recipe eval.data whose corpus to index")
    if hasattr(model, "encode_images"):  # images and captions, one point each, named vectors
        from textdml.index.qdrant_images import index_image_text

        rows = load_data(data) if data is not None else load_eval_dataset(config.eval.data)  # type: ignore[arg-type]
        written = index_image_text(model, rows, open_index(config), idx.collection, id_field=idx.id_field,
                                   batch_size=idx.batch_size, recreate=idx.recreate)
    else:
        if data is not None:
            documents = load_data(data)
        else:
            dataset = load_eval_dataset(config.eval.data)  # type: ignore[arg-type]
            _, corpus, _ = retrieval_task_from_pairs(dataset, "anchor", "positive", config.eval.max_corpus)
            documents = [{idx.id_field: doc_id, idx.text_field: text} for doc_id, text in corpus.items()]
        written = index_documents(model, documents, open_index(config), idx.collection, id_field=idx.id_field,
                                  text_field=idx.text_field, batch_size=idx.batch_size, recreate=idx.recreate)
    print(f"indexed {written} documents into collection {idx.collection!r}")
    return written


def run_search(config: RunConfig, model_path: str, queries: list[str], top_k: int,
               images: list[str] | None = None) -> list:
    from textdml.index.qdrant import search
    from textdml.models.loading import load_model

    if not queries and not images:
        raise ConfigError("give at least one --query/--text or --image")
    model, client, collection = load_model(model_path), open_index(config), config.index.collection
    dual = hasattr(model, "encode_images")
    if images and not dual:
        raise ConfigError(f"{model_path} is a text model: --image needs an image-text model")
    hits = []
    if dual:
        from textdml.index.qdrant_images import search_images_by_text, search_texts_by_image

        if queries:
            hits += list(zip(queries, search_images_by_text(model, client, collection, queries, top_k)))
        if images:
            hits += list(zip(images, search_texts_by_image(model, client, collection, images, top_k)))
    else:
        hits = list(zip(queries, search(model, client, collection, queries, top_k)))
    for query, query_hits in hits:
        print(f"\n{query}")
        for hit in query_hits:
            shown = hit.payload.get("image") if dual and query in queries else None
            print(f"  {hit.score:.3f}  {hit.payload.get(config.index.text_field, hit.doc_id)}"
                  + (f"  [{shown}]" if shown else ""))
    return hits


def run_check(config: RunConfig) -> int:
    """Print the preflight findings; 1 when there are errors."""
    from textdml.diagnostics.preflight import run_preflight
    from textdml.evaluation.build import build_evaluator

    report = run_preflight(config, evaluator=build_evaluator(config.eval))
    print(report.format())
    return 1 if report.errors else 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("httpx", "transformers", "datasets", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        if args.verb == "quickstart":
            from textdml.quickstart import run_quickstart

            run_quickstart(output_dir=args.output_dir, max_steps=args.max_steps)
            return 0
        if args.verb == "report":
            from textdml.diagnostics.report import write_report

            print(write_report(args.run_dir, args.output))
            return 0
        config = load_run_config(args.config, args.overrides)
        if args.verb == "train":
            print(json.dumps(run_train(config), indent=2))
        elif args.verb == "eval":
            run_eval(config, args.model)
        elif args.verb == "index":
            run_index(config, args.model, args.data)
        elif args.verb == "search":
            run_search(config, args.model, args.query, args.top_k, args.image)
        elif args.verb == "check":
            return run_check(config)
    except (ConfigError, FileNotFoundError, ValueError, KeyError) as err:
        print(f"textdml {args.verb}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"textdml {args.verb}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
