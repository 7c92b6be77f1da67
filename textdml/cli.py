"""``textdml <verb>``: parses arguments, builds the config, calls library functions. Nothing more."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from textdml.config import ConfigError, RunConfig, load_run_config
from textdml.models.saving import is_image_text  # light: file names and the text / image-text test


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    add_debug_argument(parser, argparse.SUPPRESS)
    parser.add_argument("--config", required=required, help="a recipe YAML under recipes/")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. training.batch_size=64")


QUANTIZATIONS = ("none", "scalar", "binary", "product")


def comma_list(kind: type, flag: str, choices: tuple[str, ...] | None = None) -> Any:
    """An argparse type for ``64,128,384``: a list of ``kind``, each among ``choices`` when given."""

    def parse(text: str) -> list:
        items = [item.strip() for item in text.split(",") if item.strip()]
        try:
            values = [kind(item) for item in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes comma-separated {kind.__name__}s, got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"{flag} is empty: give a comma-separated list, e.g. {flag} 64,128")
        unknown = [value for value in values if choices is not None and value not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"{flag}: unknown {unknown}; choose among {', '.join(choices or ())}")
        return values

    return parse


def positive_int(flag: str) -> Any:
    """An argparse type for a count that must be at least 1 (``--top-k 0`` would silently return nothing)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be a positive integer (1 or more), got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textdml", description="Deep metric learning for text embeddings.")
    add_debug_argument(parser, False)
    verbs = parser.add_subparsers(dest="verb", required=True)

    train = verbs.add_parser("train", help="train an embedder from a recipe")
    add_config_arguments(train)

    evaluate = verbs.add_parser("eval", help="evaluate a saved model on the recipe's eval data")
    evaluate.add_argument("--model", required=True, help="a saved model folder or Hub id")
    evaluate.add_argument("--through-index", action="store_true",
                          help="also evaluate through the live index collection, with its recall@k against exact search")
    evaluate.add_argument("--force", action="store_true", help="use a collection indexed by another model")
    evaluate.add_argument("--dims", type=comma_list(int, "--dims"), metavar="D,D,...",
                          help="storage vs quality: index the eval corpus into temporary collections of vectors cut "
                               "to these sizes (default: the full size) and print one table")
    evaluate.add_argument("--quantizations", type=comma_list(str, "--quantizations", QUANTIZATIONS), metavar="Q,Q,...",
                          help="with the storage table: none, scalar, binary, product (default: none)")
    add_config_arguments(evaluate)

    index = verbs.add_parser("index", help="encode documents into a Qdrant collection")
    index.add_argument("--model", required=True)
    index.add_argument("--data", help="documents (jsonl/csv/parquet or textdml:...); default: the eval corpus")
    index.add_argument("--swap", action=argparse.BooleanOptionalAction, default=None,
                       help="point the collection alias at the new version when it is complete (default: index.swap)")
    index.add_argument("--force", action="store_true", help="index although the live version has another model")
    add_config_arguments(index)

    search = verbs.add_parser("search", help="query a Qdrant collection")
    search.add_argument("--model", required=True)
    search.add_argument("--query", "--text", dest="query", action="append", default=[],
                        help="query text (repeatable); with an image-text model it returns images")
    search.add_argument("--image", action="append", default=[],
                        help="query image path (repeatable; image-text models): returns captions")
    search.add_argument("--top-k", type=positive_int("--top-k"), default=5, help="hits per query (default 5)")
    search.add_argument("--filter", action="append", default=[], metavar="FIELD=VALUE",
                        help="only documents whose payload field has this value (repeatable: all must match)")
    search.add_argument("--force", action="store_true", help="search a collection indexed by another model")
    search.add_argument("--mode", choices=["dense", "sparse", "hybrid"], default=None,
                        help="which vectors rank: dense, sparse, or both fused by index.fusion (default: hybrid on "
                             "a collection indexed with index.sparse, else dense)")
    add_config_arguments(search)

    mine = verbs.add_parser("mine", help="mine hard negatives for the recipe's train pairs")
    mine.add_argument("--model", help="the encoder that searches (default: the recipe's model)")
    mine.add_argument("--output", help="folder for mined.parquet and mining_settings.json "
                                       "(default: mine.output_dir, or <training.output_dir>/mined)")
    mine.add_argument("--collection", help="search this collection of the index section (mine.collection); "
                                           "a missing one is indexed from the corpus first")
    mine.add_argument("--force", action="store_true", help="mine through a collection indexed by another model")
    add_config_arguments(mine)

    collections = verbs.add_parser("collections", help="list the versions of each collection (and delete one)")
    collections.add_argument("--collection", help="only this collection's versions")
    collections.add_argument("--delete", metavar="VERSION", help="remove this version (the live one needs --force)")
    collections.add_argument("--force", action="store_true", help="with --delete: also remove the live version")
    add_config_arguments(collections, required=False)

    rollback = verbs.add_parser("rollback", help="point a collection's alias back at the version it replaced")
    rollback.add_argument("collection", help="the collection (alias) name")
    rollback.add_argument("--to", metavar="VERSION", help="this version instead of the previous one")
    add_config_arguments(rollback, required=False)

    push = verbs.add_parser("push", help="upload a saved model (weights or adapter, configs, card) to the Hub")
    push.add_argument("model_dir", help="a saved model folder, e.g. runs/x/final")
    push.add_argument("--repo-id", required=True, help="namespace/name on the Hugging Face Hub")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--revision", help="the branch to push to (default main)")
    push.add_argument("--dry-run", action="store_true", help="write the folder that would be uploaded, list it, send nothing")
    push.add_argument("--output", help="where --dry-run writes the folder (default <model_dir>-hub)")
    push.add_argument("--force", action="store_true",
                      help="replace --output even when it holds something textdml push did not stage there")
    push.add_argument("--base-model", help="Hub id of the base model, when the model's card and adapter cannot tell")
    push.add_argument("--commit-message")

    merge = verbs.add_parser("merge", help="merge a saved adapter into its base model and save the full model")
    merge.add_argument("adapter_dir", help="a folder saved with training.save_adapter=true")
    merge.add_argument("out_dir", help="where to write the merged model (a new or empty folder)")
    merge.add_argument("--force", action="store_true", help="replace out_dir even when textdml merge did not write it")

    export = verbs.add_parser("export", help="write a text model as ONNX or OpenVINO (optionally int8) for fast CPU "
                                             "encoding (model.backend)")
    export.add_argument("model", help="a saved text model folder or Hub id")
    export.add_argument("--format", choices=("onnx", "openvino"),
                        help="onnx (onnxruntime) or openvino; default onnx (required with --quantize)")
    export.add_argument("--quantize", choices=("int8",), help="also write an int8 file, which model.backend loads")
    export.add_argument("--output", required=True, help="the folder to write (new or empty)")
    export.add_argument("--force", action="store_true", help="replace --output even when textdml export did not write it")
    add_debug_argument(export, argparse.SUPPRESS)

    check = verbs.add_parser("check", help="preflight: check data, loss, margins and memory before training")
    add_config_arguments(check)

    report = verbs.add_parser("report", help="write a run folder's HTML report (plots of loss, metrics, health)")
    report.add_argument("run_dir", help="a training.output_dir")
    report.add_argument("--output", help="where to write the page (default: <run_dir>/report.html)")
    report.add_argument("--force", action="store_true", help="overwrite --output even when it is not a textdml report")

    quick = verbs.add_parser("quickstart", help="train -> evaluate -> index -> search on WordNet, offline")
    quick.add_argument("--output-dir", default="runs/quickstart")
    quick.add_argument("--max-steps", type=int, default=None)
    quick.add_argument("--force", action="store_true",
                       help="replace a run of other settings (e.g. other --max-steps) in --output-dir")
    add_debug_argument(quick, argparse.SUPPRESS)
    parser.verb_parsers = verbs.choices  # type: ignore[attr-defined]  (see parse_arguments)
    return parser


def add_debug_argument(parser: argparse.ArgumentParser, default: Any) -> None:
    # SUPPRESS on the verbs: `textdml --debug train` and `textdml train --debug` both work.
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show the full traceback of an error instead of one line")
    parser.add_argument("--verbose", action="store_true", default=default,
                        help="keep other libraries' progress bars, logs and FutureWarnings (also TEXTDML_VERBOSE=1)")


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
    args.verbose = getattr(args, "verbose", False)
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


def run_eval(config: RunConfig, model_path: str, through_index: bool = False, force: bool = False,
             dims: list[int] | None = None, quantizations: list[str] | None = None) -> dict[str, float]:
    from textdml.evaluation.build import build_evaluator
    from textdml.evaluation.retrieval import format_table

    evaluator = build_evaluator(config.eval)
    if evaluator is None:
        raise ConfigError("the recipe has no eval.data: name held-out data to evaluate on")
    model = load_cli_model(config, model_path)
    results = evaluator(model)
    print(format_table(results))  # the one table: evaluators log their results at debug level only
    if through_index:
        from textdml.index.evaluate_index import evaluate_live_index

        results = {**results, **evaluate_live_index(model, evaluator, config.index, force=force)}
    if dims or quantizations:
        from textdml.index.evaluate_index import print_storage_table

        rows = print_storage_table(model, evaluator, config.index, dims, quantizations or ["none"])
        results.update({f"storage/dim{row.dim}_{row.quantization}_{name}": value
                        for row in rows for name, value in row.metrics.items()})
    return results


def load_cli_model(config: RunConfig, model_path: str) -> Any:
    """The model ``--model`` names, with the recipe's ``model.prompts`` when it gives them: prompts
    change the vectors, so documents are indexed with the "document" prompt and queries searched with
    the "query" prompt, as in training."""
    from textdml.models.loading import load_model

    model = load_model(model_path, backend=config.model.backend, backend_file=config.model.backend_file)
    prompts = config.model.prompts
    if prompts is not None:
        if is_image_text(model):
            raise ConfigError(f"model.prompts is set, but {model_path} is an image-text model, which encodes "
                              "texts without prompts: drop model.prompts")
        model.prompts = dict(prompts)
        if getattr(model, "default_prompt_name", None) not in model.prompts:
            model.default_prompt_name = None  # a saved default that the new prompts no longer have
    return model


def open_index(config: RunConfig, create: bool = True):
    from textdml.index.qdrant import open_index as open_engine

    return open_engine(config.index, create=create)


def load_index_section(path: str | None, overrides: list[str]) -> RunConfig:
    """``collections`` and ``rollback`` need only the index section: no recipe, just ``index.*`` overrides."""
    if path is not None:
        return load_run_config(path, overrides)
    from textdml.config import IndexConfig, apply_override, from_dict

    raw: dict[str, Any] = {}
    for override in overrides:
        apply_override(raw, override)
    if set(raw) - {"index"}:
        raise ConfigError(f"without --config only index.* overrides apply, got {sorted(set(raw) - {'index'})}")
    return RunConfig(index=from_dict(IndexConfig, raw.get("index", {}), "config.index"))


def run_collections(config: RunConfig, collection: str | None, delete: str | None, force: bool) -> None:
    from textdml.index.versions import delete_version, format_versions, list_versions, versions_of

    with open_index(config, create=False) as engine:
        if delete is not None:
            delete_version(engine, delete, force=force)
            print(f"deleted {delete}")
        # After a delete, a collection without versions left is no mistyped name.
        known = collection is None or delete is not None
        print(format_versions(list_versions(engine, collection) if known else versions_of(engine, collection)))


def run_rollback(config: RunConfig, collection: str, to: str | None) -> str:
    from textdml.index.versions import rollback

    with open_index(config, create=False) as engine:
        target = rollback(engine, collection, to)
    print(f"{collection} -> {target}")
    return target


def run_index(config: RunConfig, model_path: str, data: str | None, swap: bool | None = None,
              force: bool = False) -> int:
    from textdml.data.loading import load_data
    from textdml.evaluation.build import load_eval_dataset, retrieval_task_from_pairs
    from textdml.index.qdrant import collection_options, index_documents, sparse_source

    idx = config.index
    model = load_cli_model(config, model_path)
    import torch

    if torch.cuda.is_available():  # encoding is the slow half of indexing
        model.to("cuda")
    if data is None and config.eval.data is None:
        raise ConfigError("no documents: pass --data, or give the recipe eval.data whose corpus to index")
    image_text = is_image_text(model)  # images and captions, one point each, named vectors
    if image_text and idx.sparse is not None:
        raise ConfigError(f"index.sparse={idx.sparse!r} adds sparse text vectors; {model_path} is an image-text model, "
                          "whose collections hold image and text vectors: drop index.sparse")
    if image_text and idx.dim is not None:
        raise ConfigError(f"index.dim={idx.dim} cuts text vectors; {model_path} is an image-text model, whose "
                          "image and text vectors are stored at full size: drop index.dim")
    if data is not None:
        documents = load_data(data)
    elif image_text:  # image-text pairs: the eval rows themselves
        documents = load_eval_dataset(config.eval.data)  # type: ignore[arg-type]
    else:
        dataset = load_eval_dataset(config.eval.data)  # type: ignore[arg-type]
        _, corpus, _ = retrieval_task_from_pairs(dataset, "anchor", "positive", config.eval.max_corpus)
        documents = [{idx.id_field: doc_id, idx.text_field: text} for doc_id, text in corpus.items()]
    common = dict(id_field=idx.id_field, text_field=idx.text_field, batch_size=idx.batch_size, recreate=idx.recreate,
                  versioned=idx.versioned, swap=idx.swap if swap is None else swap, force=force or idx.force,
                  options=collection_options(idx), encode_batch_size=idx.encode_batch_size)
    with open_index(config) as engine:
        if image_text:
            from textdml.index.qdrant_images import index_image_text

            report = index_image_text(model, documents, engine, idx.collection, **common)
        else:
            report = index_documents(model, documents, engine, idx.collection, dim=idx.dim,
                                     sparse=sparse_source(idx), **common)
    print(f"indexed {report.points} documents into {report.version} ({report.written} encoded, "
          f"{report.skipped} unchanged, {report.docs_per_second:.0f} docs/s"
          + (f", vectors cut to {idx.dim} of {model.embedding_dim} coordinates" if idx.dim is not None else "")
          + (f", with {idx.sparse} sparse vectors" if idx.sparse is not None else "")
          + ")"
          + (f"; {idx.collection!r} now points at it" if report.live and idx.versioned else "")
          + ("" if report.live else f"; not live: `textdml rollback {idx.collection} --to {report.version}` "
             "would publish it"))
    return report.written


def run_search(config: RunConfig, model_path: str, queries: list[str], top_k: int,
               images: list[str] | None = None, filters: list[str] | None = None, force: bool = False,
               mode: str | None = None) -> list:
    from textdml.index.filters import parse_filters
    from textdml.index.qdrant import fusion_settings, search, search_options, sparse_source

    if not queries and not images:
        raise ConfigError("give at least one --query/--text or --image")
    query_filter = parse_filters(filters or [])
    client = open_index(config, create=False)  # before loading the model: a mistyped path fails fast
    model, collection = load_cli_model(config, model_path), config.index.collection
    dual = is_image_text(model)
    if images and not dual:
        raise ConfigError(f"{model_path} is a text model: --image needs an image-text model")
    if dual and mode not in (None, "dense"):
        raise ConfigError(f"--mode {mode} searches sparse vectors; {model_path} is an image-text model, whose "
                          "collections hold dense vectors only: drop --mode")
    hits = []
    if dual:
        from textdml.index.qdrant_images import search_images_by_text, search_texts_by_image

        settings = {"filter": query_filter, "force": force or config.index.force,
                    "options": search_options(config.index)}
        if queries:
            hits += list(zip(queries, search_images_by_text(model, client, collection, queries, top_k, **settings)))
        if images:
            hits += list(zip(images, search_texts_by_image(model, client, collection, images, top_k, **settings)))
    else:
        hits = list(zip(queries, search(model, client, collection, queries, top_k, filter=query_filter,
                                        force=force or config.index.force, options=search_options(config.index),
                                        expected_dim=config.index.dim, mode=mode, fusion=fusion_settings(config.index),
                                        sparse=sparse_source(config.index))))
    client.close()
    for query, query_hits in hits:
        print(f"\n{query}")
        for hit in query_hits:
            shown = hit.payload.get("image") if dual and query in queries else None
            print(f"  {hit.score:.3f}  {hit.payload.get(config.index.text_field, hit.doc_id)}"
                  + (f"  [{shown}]" if shown else ""))
    return hits


def run_mine(config: RunConfig, model_path: str | None, output: str | None, force: bool = False) -> int:
    from pathlib import Path

    from textdml.mining.hard_negatives import SETTINGS_FILE
    from textdml.mining.run import mine_for_run
    from textdml.training.build import create_model

    model = load_cli_model(config, model_path) if model_path else create_model(config.model)
    mined = mine_for_run(config, model, output, show_progress_bar=config.training.show_progress_bar, force=force)
    folder = Path(output or (config.mine.output_dir if config.mine else None) or
                  Path(config.training.output_dir) / "mined")
    searched = json.loads((folder / SETTINGS_FILE).read_text()).get("collection")
    print(f"mined {mined.num_rows} rows into {folder / 'mined.parquet'} (settings: {folder / SETTINGS_FILE})"
          + (f"; searched {searched['version']} ({'indexed by this run' if searched['indexed'] else 'as it was'})"
             if searched else ""))
    return mined.num_rows


def mask_config_secrets(config: RunConfig) -> set[str]:
    from textdml.config import to_dict
    from textdml.redaction import environment_secrets, mask_logs, secret_values

    secrets = secret_values(to_dict(config)) | environment_secrets()
    mask_logs(secrets)
    return secrets

def run_push(args: argparse.Namespace) -> Any:
    from textdml.hub.push import format_listing, push_to_hub

    result = push_to_hub(args.model_dir, args.repo_id, private=args.private, revision=args.revision,
                         dry_run=args.dry_run, staging_dir=args.output, commit_message=args.commit_message,
                         base_model=args.base_model, force=args.force)
    print(format_listing(result))
    print(f"dry run: nothing was uploaded to {result.repo_id}" if args.dry_run else f"pushed to {result.url}")
    return result

def run_check(config: RunConfig) -> int:
    """Print the preflight findings; 1 when there are errors."""
    from textdml.diagnostics.preflight import run_preflight
    from textdml.evaluation.build import build_evaluator

    report = run_preflight(config, evaluator=build_evaluator(config.eval))
    print(report.format())
    return 1 if report.errors else 0


def main(argv: list[str] | None = None) -> int:
    from textdml.console import cli_console

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_arguments(argv)
    with cli_console(args.verbose):  # one line per warning; other libraries quiet unless --verbose
        return run_verb(args)


def run_verb(args: argparse.Namespace) -> int:
    """Run the parsed ``textdml <verb>``; a user's error is one line on stderr and exit status 2."""
    from textdml.redaction import environment_secrets, mask_logs

    # Secret values (environment, then the config's): masked in logs, the error line and tracebacks.
    secrets: set[str] = environment_secrets()
    mask_logs(secrets)
    try:
        if args.verb == "quickstart":
            from textdml.quickstart import run_quickstart

            run_quickstart(output_dir=args.output_dir, max_steps=args.max_steps, force=args.force)
            return 0
        if args.verb == "report":
            from textdml.diagnostics.report import write_report

            print(write_report(args.run_dir, args.output, force=args.force))
            return 0
        if args.verb == "push":
            run_push(args)
            return 0
        if args.verb == "merge":
            from textdml.models.adapters import merge_adapter

            print(f"merged model written to {merge_adapter(args.adapter_dir, args.out_dir, force=args.force)}")
            return 0
        if args.verb == "export":
            from textdml.export import export_model, read_manifest

            folder = export_model(args.model, args.output, args.format, args.quantize, force=args.force)
            manifest = read_manifest(folder)
            print(f"exported {args.model} to {folder} ({manifest['file']}); encode with it: "
                  f"--model {folder} model.backend={manifest['format']}")
            return 0
        if args.verb == "mine" and args.collection is not None:  # an override, so it is validated as one
            args.overrides.append(f"mine.collection={json.dumps(args.collection)}")
        if args.verb in ("collections", "rollback"):
            config = load_index_section(args.config, args.overrides)
        else:
            config = load_run_config(args.config, args.overrides)
        secrets = mask_config_secrets(config)
        if args.verb == "train":
            print(json.dumps(run_train(config), indent=2))
        elif args.verb == "eval":
            run_eval(config, args.model, args.through_index, args.force, args.dims, args.quantizations)
        elif args.verb == "index":
            run_index(config, args.model, args.data, args.swap, args.force)
        elif args.verb == "search":
            run_search(config, args.model, args.query, args.top_k, args.image, args.filter, args.force, args.mode)
        elif args.verb == "collections":
            run_collections(config, args.collection, args.delete, args.force)
        elif args.verb == "rollback":
            run_rollback(config, args.collection, args.to)
        elif args.verb == "mine":
            run_mine(config, args.model, args.output, args.force)
        elif args.verb == "check":
            return run_check(config)
    except KeyboardInterrupt as err:  # TrainingInterrupted says where it saved and carries the signal
        print(f"textdml {args.verb}: {str(err) or 'interrupted'}", file=sys.stderr)
        return 128 + getattr(err, "signum", 2)
    except Exception as err:
        from textdml.errors import explain
        from textdml.redaction import mask_text, masked_excepthook

        message = explain(err)
        if message is None or args.debug:  # an unexplained failure is a bug: keep its traceback
            sys.excepthook = masked_excepthook(secrets)  # ... without the keys and URL passwords in it
            raise

        print(f"textdml {args.verb}: error: {mask_text(message, secrets)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
