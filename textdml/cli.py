"""``textdml <verb>``: parses arguments, builds the config, calls library functions. Nothing more."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from textdml.config import ConfigError, RunConfig, load_run_config


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    add_debug_argument(parser, argparse.SUPPRESS)
    parser.add_argument("--config", required=required, help="a recipe YAML under recipes/")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. training.batch_size=64")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textdml", description="Deep metric learning for text embeddings.")
    add_debug_argument(parser, False)
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

    mine = verbs.add_parser("mine", help="mine hard negatives for the recipe's train pairs")
    mine.add_argument("--model", help="the encoder that searches (default: the recipe's model)")
    mine.add_argument("--output", help="folder for mined.parquet and mining_settings.json "
                                       "(default: mine.output_dir, or <training.output_dir>/mined)")
    add_config_arguments(mine)

    quick = verbs.add_parser("quickstart", help="train -> evaluate -> index -> search on WordNet, offline")
    quick.add_argument("--output-dir", default="runs/quickstart")
    quick.add_argument("--max-steps", type=int, default=None)
    add_debug_argument(quick, argparse.SUPPRESS)
    parser.verb_parsers = verbs.choices  # type: ignore[attr-defined]  (see parse_arguments)
    return parser


def add_debug_argument(parser: argparse.ArgumentParser, default: Any) -> None:
    # SUPPRESS on the verbs: `textdml --debug train` and `textdml train --debug` both work.
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show the full traceback of an error instead of one line")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``textdml <verb> ...`` with overrides allowed anywhere among the options.

    argparse's plain parsing takes the positional overrides in one run only, so
    ``search --query cat index.collection=x --top-k 2`` would be rejected; each verb's own parser
    parses intermixed instead (the top-level parser cannot: it holds subparsers).
    """
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    verb_parsers = parser.verb_parsers  # type: ignore[attr-defined]
    if not argv or argv[0] not in verb_parsers:
        return parser.parse_args(argv)  # help, or the usage error naming the verbs
    args = verb_parsers[argv[0]].parse_intermixed_args(argv[1:])
    args.verb = argv[0]
    args.debug = getattr(args, "debug", False)  # the verb's --debug defaults to SUPPRESS
    return args


def run_train(config: RunConfig) -> dict[str, Any]:
    from textdml.console import quiet_progress_bars
    from textdml.evaluation.build import build_evaluator
    from textdml.training.loop import train

    with quiet_progress_bars(not config.training.show_progress_bar):  # loading the eval data draws no bar
        evaluator = build_evaluator(config.eval)
    result = train(config, evaluator=evaluator)
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
    print(format_table(results))  # the one table: evaluators log their results at debug level only
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


def run_mine(config: RunConfig, model_path: str | None, output: str | None) -> int:
    from pathlib import Path

    from textdml.mining.run import mine_for_run
    from textdml.models.loading import load_model
    from textdml.training.build import create_model

    model = load_model(model_path) if model_path else create_model(config.model)
    if config.model.prompts is not None and model_path:
        model.prompts = dict(config.model.prompts)
    mined = mine_for_run(config, model, output, show_progress_bar=config.training.show_progress_bar)
    folder = Path(output or (config.mine.output_dir if config.mine else None) or
                  Path(config.training.output_dir) / "mined")
    print(f"mined {mined.num_rows} rows into {folder / 'mined.parquet'} (settings: {folder / 'mining_settings.json'})")
    return mined.num_rows


def mask_config_secrets(config: RunConfig) -> set[str]:
    from textdml.config import to_dict
    from textdml.redaction import environment_secrets, mask_logs, secret_values

    secrets = secret_values(to_dict(config)) | environment_secrets()
    mask_logs(secrets)
    return secrets


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("httpx", "transformers", "datasets", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parse_arguments(argv)
    secrets: set[str] = set()  # the config's secret values: masked in logs and in the error line
    try:
        if args.verb == "quickstart":
            from textdml.quickstart import run_quickstart

            run_quickstart(output_dir=args.output_dir, max_steps=args.max_steps)
            return 0
        config = load_run_config(args.config, args.overrides)
        secrets = mask_config_secrets(config)
        if args.verb == "train":
            print(json.dumps(run_train(config), indent=2))
        elif args.verb == "eval":
            run_eval(config, args.model)
        elif args.verb == "index":
            run_index(config, args.model, args.data)
        elif args.verb == "search":
            run_search(config, args.model, args.query, args.top_k, args.image)
        elif args.verb == "mine":
            run_mine(config, args.model, args.output)
    except KeyboardInterrupt as err:  # TrainingInterrupted says where it saved and carries the signal
        print(f"textdml {args.verb}: {str(err) or 'interrupted'}", file=sys.stderr)
        return 128 + getattr(err, "signum", 2)
    except Exception as err:
        from textdml.errors import explain

        message = explain(err)
        if message is None or args.debug:  # an unexplained failure is a bug: keep its traceback
            raise
        from textdml.redaction import mask_text

        print(f"textdml {args.verb}: error: {mask_text(message, secrets)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
