"""Time the batch samplers of ``textdml.data.batching`` on synthetic pair data.

    .venv/bin/python scripts/bench_samplers.py                 # 1M pairs, batch 128
    .venv/bin/python scripts/bench_samplers.py --rows 200000 --peer-rows 200000

Prints seconds per stage and, for the no-duplicates sampler, the ratio against
sentence-transformers' NoDuplicatesBatchSampler (precomputed hashes) run on the same rows in the
same process, on the first ``--peer-rows`` rows (default: all of them; 0 skips it).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from textdml.data.batching import MultiDatasetBatchSampler, NoDuplicatesBatchSampler, TokenBudgetBatchSampler


def synthetic_pairs(num_rows: int, seed: int = 0) -> list[tuple[str, str]]:
    """Unique questions; answers drawn from num_rows / 4 texts (each repeated about 4 times)."""
    rng = np.random.default_rng(seed)
    answers = rng.integers(0, max(1, num_rows // 4), num_rows).tolist()
    return [(f"question {i} about topic {i % 997}", f"answer text number {a}") for i, a in enumerate(answers)]


def timed(label: str, fn):
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    print(f"{label:<58} {seconds:8.2f} s")
    return result, seconds


def bench_no_duplicates(rows: list[tuple[str, str]], batch_size: int) -> float:
    sampler, hash_seconds = timed(f"NoDuplicatesBatchSampler: hash {len(rows):,} rows",
                                  lambda: NoDuplicatesBatchSampler(rows, batch_size, seed=0))
    batches, plan_seconds = timed("NoDuplicatesBatchSampler: plan one epoch", lambda: list(sampler))
    short = sum(len(b) for b in batches if len(b) < batch_size)
    print(f"  {len(batches):,} batches, {short:,} rows in short batches")
    return hash_seconds + plan_seconds


def bench_peer(rows: list[tuple[str, str]], batch_size: int) -> float | None:
    try:
        from datasets import Dataset
        from sentence_transformers.base.sampler import NoDuplicatesBatchSampler as PeerSampler
    except ImportError as err:
        print(f"peer skipped: {err}")
        return None
    dataset = Dataset.from_dict({"anchor": [a for a, _ in rows], "positive": [p for _, p in rows]})

    def run() -> int:
        sampler = PeerSampler(dataset, batch_size=batch_size, drop_last=False, precompute_hashes=True,
                              precompute_num_proc=1)
        return sum(1 for _ in sampler)

    _, seconds = timed(f"sentence-transformers NoDuplicatesBatchSampler: {len(rows):,} rows", run)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--peer-rows", type=int, default=None, help="rows for the peer (default --rows, 0 skips it)")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    rows, _ = timed(f"build {args.rows:,} synthetic pairs", lambda: synthetic_pairs(args.rows))
    ours = bench_no_duplicates(rows, args.batch_size)
    peer_count = args.rows if args.peer_rows is None else args.peer_rows
    if peer_count:
        peer_rows = rows[:peer_count]
        ours_small = bench_no_duplicates(peer_rows, args.batch_size) if peer_count != args.rows else ours
        peer = bench_peer(peer_rows, args.batch_size)
        if peer is not None:
            print(f"  peer / textdml time on {len(peer_rows):,} rows: {peer / ours_small:.1f}x")

    lengths = np.random.default_rng(0).integers(4, 257, args.rows)
    token_sampler = TokenBudgetBatchSampler(lengths, max_tokens=16_384, seed=0)
    timed("TokenBudgetBatchSampler: plan one epoch", lambda: len(token_sampler))
    multi = MultiDatasetBatchSampler([args.rows // 2, args.rows // 3, args.rows // 6], args.batch_size)
    timed("MultiDatasetBatchSampler (proportional): plan one epoch", lambda: len(multi))


if __name__ == "__main__":
    main()
