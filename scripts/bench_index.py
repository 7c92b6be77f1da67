"""Indexing and search benchmark: textdml `index` vs hand-written sentence-transformers loops.

One run, the same documents (WordNet 3.0 definitions) and the same model for every contestant:

- ``textdml``:  ``index_documents`` into the default engine (Qdrant Edge, versioned, streaming,
  encoding overlapped with upserts, HNSW built once at the end above ``index.hnsw_threshold``);
- ``st_local``: ``SentenceTransformer.encode`` + qdrant-client local-mode ``upsert``, batches of 1,024
  (what the embedded default was before);
- ``st_edge``:  the same loop on a Qdrant Edge shard, ``optimize()`` at the end.

Each contestant runs in its own process (so peak RSS is its own) and reports docs/s (encoding
included), search ms/query (one query at a time, top 10, query vectors precomputed), recall@10 of
its search against exact search on the same collection, peak RSS and disk. Besides docs/s (wall
time) it prints docs per CPU second of the process: textdml tokenises the next batch and upserts
the previous chunk in helper threads, which wall time alone would not show. ``--model tiny`` is a
2-layer 32-d random BERT: encoding is nearly free, so it isolates the engines.

    python scripts/bench_index.py --docs 10000 --model both
    python scripts/bench_index.py --docs 100000 --model tiny --peer-max-docs 20000
    python scripts/bench_index.py --precomputed 1000000      # 1M 384-d vectors through textdml: RSS
    python scripts/bench_index.py --precomputed 20000 --contestants textdml,st_local  # the engines alone

Never imported by the package.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

COLLECTION = "bench"
TOP_K = 10


# ---------------------------------------------------------------------- data and models
def wordnet_documents(num_docs: int) -> tuple[list[dict], list[str]]:
    """Definitions as documents (repeated with a suffix past WordNet's 117,659), examples as queries."""
    from textdml.data.wordnet import read_synsets

    synsets = read_synsets()
    documents = []
    for i in range(num_docs):
        synset = synsets[i % len(synsets)]
        text = f"{', '.join(synset.words[:3])}: {synset.definition}"
        if i >= len(synsets):
            text += f" (variant {i // len(synsets)})"
        documents.append({"id": f"{synset.id}-{i // len(synsets)}", "text": text, "lexname": synset.lexname})
    queries = [example for synset in synsets[:5000] for example in synset.examples[:1]]
    return documents, queries


def model_folder(kind: str, work: Path) -> Path:
    from tests.conftest import minilm_folder

    if kind == "minilm":
        return minilm_folder()
    folder = work / "tiny_model"
    if not folder.exists():
        import torch
        from transformers import AutoTokenizer, BertModel

        from textdml.models.embedder import tiny_bert_config

        torch.manual_seed(0)
        tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
        BertModel(tiny_bert_config(vocab_size=tokenizer.vocab_size)).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def disk_mb(path: Path) -> float:
    # Blocks really used: Edge preallocates sparse WAL and mmap files whose apparent size is far larger.
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file()) / 2**20


def timed_searches(search_one, query_vectors: np.ndarray) -> tuple[float, list[list[str]]]:
    for vector in query_vectors[:5]:  # warm-up
        search_one(vector)
    started = time.perf_counter()
    results = [search_one(vector) for vector in query_vectors]
    return (time.perf_counter() - started) / len(query_vectors) * 1000, results


def recall_at_k(approx: list[list[str]], exact: list[list[str]], k: int = TOP_K) -> float:
    return float(np.mean([len(set(a[:k]) & set(e[:k])) / max(1, len(e[:k])) for a, e in zip(approx, exact)]))


# ---------------------------------------------------------------------- contestants (one per process)
def run_textdml(documents, query_texts, folder, model_path, args) -> dict:
    from textdml.index import CollectionOptions, SearchOptions, index_documents, open_client
    from textdml.models import Embedder

    model = Embedder.from_pretrained(model_path)
    engine = open_client(path=folder)
    options = CollectionOptions(hnsw_threshold=args.hnsw_threshold)
    started, cpu_started = time.perf_counter(), time.process_time()
    report = index_documents(model, documents, engine, COLLECTION, options=options, show_progress_bar=False,
                             batch_size=args.batch_size)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    target = engine.resolve(COLLECTION)
    query_vectors = model.encode(query_texts, batch_size=64)
    search = SearchOptions(ef=args.ef)
    ms, approx = timed_searches(lambda v: [r.id for r in engine.search(target, v[None], TOP_K, options=search)[0]],
                                query_vectors)
    exact = [[r.id for r in hits] for hits in engine.search(target, query_vectors, TOP_K,
                                                            options=SearchOptions(exact=True))]
    sweep = []  # the same graph searched with other index.search_ef values: what recall costs
    for ef in [int(e) for e in args.ef_sweep.split(",")] if args.ef_sweep else []:
        options_ef = SearchOptions(ef=ef)
        ef_ms, ef_hits = timed_searches(
            lambda v, o=options_ef: [r.id for r in engine.search(target, v[None], TOP_K, options=o)[0]], query_vectors)
        sweep.append({"ef": ef, "search_ms": ef_ms, "recall@10": recall_at_k(ef_hits, exact)})
    engine.close()
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "points": report.points, "hnsw": report.hnsw_built,
            "search_ms": ms, "recall@10": recall_at_k(approx, exact), "ef_sweep": sweep}


def local_mode_loop(client, documents: list[dict], encode, dim: int) -> None:
    """The hand-written loop: encode 1,024 documents, upsert them into qdrant-client, repeat."""
    from qdrant_client import models

    client.create_collection(COLLECTION, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE))
    for start in range(0, len(documents), 1024):
        batch = documents[start : start + 1024]
        vectors = encode([d["text"] for d in batch])
        client.upsert(COLLECTION, points=[models.PointStruct(id=i, vector=v.tolist(), payload=d)
                                          for i, (v, d) in enumerate(zip(vectors, batch), start=start)])


def run_st_local(documents, query_texts, folder, model_path, args) -> dict:
    from qdrant_client import QdrantClient
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_path), device="cpu")
    client = QdrantClient(path=str(folder))
    started, cpu_started = time.perf_counter(), time.process_time()
    local_mode_loop(client, documents, lambda texts: model.encode(texts, batch_size=64),
                    model.get_sentence_embedding_dimension())
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    query_vectors = model.encode(query_texts, batch_size=64)
    ms, approx = timed_searches(
        lambda v: [p.id for p in client.query_points(COLLECTION, query=v.tolist(), limit=TOP_K).points], query_vectors)
    client.close()
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "points": len(documents), "hnsw": False, "search_ms": ms,
            "recall@10": 1.0}  # the local mode only searches exactly


def run_st_edge(documents, query_texts, folder, model_path, args) -> dict:
    import qdrant_edge as qe
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_path), device="cpu")
    shard = qe.EdgeShard.create(str(folder), qe.EdgeConfig(vectors=qe.EdgeVectorParams(
        size=model.get_sentence_embedding_dimension(), distance=qe.Distance.Cosine)))
    started, cpu_started = time.perf_counter(), time.process_time()
    for start in range(0, len(documents), 1024):
        batch = documents[start : start + 1024]
        vectors = model.encode([d["text"] for d in batch], batch_size=64)
        shard.update(qe.UpdateOperation.upsert_points([qe.Point(id=i, vector=v.tolist(), payload=d)
                                                       for i, (v, d) in enumerate(zip(vectors, batch), start=start)]))
    shard.optimize()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    query_vectors = model.encode(query_texts, batch_size=64)
    params = qe.SearchParams(hnsw_ef=args.ef)

    def search_one(v, exact=False):
        request = qe.QueryRequest(limit=TOP_K, query=qe.Query.Nearest(v.tolist()), with_payload=True,
                                  params=qe.SearchParams(exact=True) if exact else params)
        return [str(p.id) for p in shard.query(request)]

    ms, approx = timed_searches(search_one, query_vectors)
    exact = [search_one(v, exact=True) for v in query_vectors]
    shard.close()
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "points": len(documents), "hnsw": True, "search_ms": ms,
            "recall@10": recall_at_k(approx, exact)}


class RandomVectors:
    """A stand-in "model" returning precomputed-like 384-d unit vectors, a function of the text.

    Like :func:`clustered_vectors` (1,000 centres plus noise: real embeddings cluster, and uniform
    noise is HNSW's slowest graph to build), with the noise a random-feature map of the text's CRC:
    vectorised, so producing them costs next to nothing beside the engines being measured.
    """

    embedding_dim, similarity, normalize = 384, "cosine", True
    _rng = np.random.default_rng(0)
    CENTRES = _rng.standard_normal((1000, 384), dtype=np.float32)
    FREQUENCIES = _rng.uniform(1e-6, 1e-3, 384)
    PHASES = _rng.uniform(0, 2 * np.pi, 384)

    def encode(self, texts, batch_size=64, normalize=None, show_progress_bar=None, convert_to="numpy"):
        keys = np.fromiter((zlib.crc32(t.encode()) for t in texts), dtype=np.int64, count=len(texts))
        noise = np.sqrt(2) * np.sin(keys[:, None] * self.FREQUENCIES[None, :] + self.PHASES[None, :])  # var 1
        vectors = self.CENTRES[keys % 1000] + 0.6 * noise.astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def identity(self):
        return {"model_name": "bench/random-vectors", "weights_sha256": "0" * 64}


def run_precomputed(args, folder: Path) -> dict:
    import torch  # noqa: F401  (indexing imports it; any real model has already, so it is not timed)

    from textdml.index import CollectionOptions, index_documents, open_client

    engine = open_client(path=folder)
    documents = ({"id": str(i), "text": f"d{i}"} for i in range(args.precomputed))
    started = time.perf_counter()
    report = index_documents(RandomVectors(), documents, engine, COLLECTION, batch_size=args.batch_size,
                             options=CollectionOptions(hnsw_threshold=args.hnsw_threshold), show_progress_bar=True)
    engine.close()
    return {"seconds": time.perf_counter() - started, "points": report.points, "hnsw": report.hnsw_built,
            "docs_per_s": report.points / (time.perf_counter() - started), "peak_rss_mb": peak_rss_mb(),
            "disk_mb": disk_mb(folder)}


def run_precomputed_local(args, folder: Path) -> dict:
    """The same precomputed vectors upserted by the local-mode loop (what ``st_local`` does after encoding)."""
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(folder))
    documents = [{"id": str(i), "text": f"d{i}"} for i in range(args.precomputed)]
    started = time.perf_counter()
    local_mode_loop(client, documents, RandomVectors().encode, RandomVectors.embedding_dim)
    seconds = time.perf_counter() - started
    client.close()
    return {"seconds": seconds, "points": args.precomputed, "hnsw": False, "docs_per_s": args.precomputed / seconds,
            "peak_rss_mb": peak_rss_mb(), "disk_mb": disk_mb(folder)}


def clustered_vectors(num: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    """Unit vectors around 1,000 centres: closer to real embeddings than uniform noise (HNSW's worst case)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, dim), dtype=np.float32)
    vectors = centres[rng.integers(0, 1000, num)] + 0.6 * rng.standard_normal((num, dim), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def hnsw_sweep(sizes: list[int], ef: int, queries: int) -> None:
    """Exact search vs HNSW on Edge at each size: search ms/query, graph build seconds, recall@10."""
    import qdrant_edge as qe

    print(f"{'points':>8}{'exact ms/q':>12}{'build s':>9}{'hnsw ms/q':>11}{'recall@10':>11}")
    for size in sizes:
        folder = Path(tempfile.mkdtemp(prefix="hnsw_sweep_"))
        vectors = clustered_vectors(size + queries)
        data, query_vectors = vectors[:size], vectors[size:]
        shard = qe.EdgeShard.create(str(folder / "s"), qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=384, distance=qe.Distance.Cosine),
            hnsw_config=qe.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=1),
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=1)))
        for start in range(0, size, 4096):
            shard.update(qe.UpdateOperation.upsert_points([qe.Point(id=i, vector=v.tolist(), payload={})
                                                           for i, v in enumerate(data[start:start + 4096], start)]))

        def search_one(v, exact, shard=shard):
            params = qe.SearchParams(exact=True) if exact else qe.SearchParams(hnsw_ef=ef)
            return [str(p.id) for p in shard.query(qe.QueryRequest(limit=TOP_K, query=qe.Query.Nearest(v.tolist()),
                                                                   params=params))]

        exact_ms, exact = timed_searches(lambda v: search_one(v, True), query_vectors)
        started = time.perf_counter()
        shard.optimize()
        build = time.perf_counter() - started
        hnsw_ms, approx = timed_searches(lambda v: search_one(v, False), query_vectors)
        print(f"{size:>8}{exact_ms:>12.2f}{build:>9.1f}{hnsw_ms:>11.2f}{recall_at_k(approx, exact):>11.3f}", flush=True)
        shard.close()
        shutil.rmtree(folder, ignore_errors=True)


WORKERS = {"textdml": run_textdml, "st_local": run_st_local, "st_edge": run_st_edge}
PRECOMPUTED = {"precomputed": run_precomputed, "precomputed_local": run_precomputed_local}


def worker(args) -> None:
    import torch

    # Same for every contestant. On a machine with other work, two spinning intra-op threads can
    # make encoding 10x slower than one.
    torch.set_num_threads(args.torch_threads)
    folder = Path(args.folder)
    if args.worker in PRECOMPUTED:
        print(json.dumps(PRECOMPUTED[args.worker](args, folder)))
        return
    num_docs = min(args.docs, args.peer_max_docs) if args.worker == "st_local" and args.peer_max_docs else args.docs
    documents, queries = wordnet_documents(num_docs)
    result = WORKERS[args.worker](documents, queries[: args.queries], folder, Path(args.model_path), args)
    result.update(docs=num_docs, docs_per_s=num_docs / result["seconds"],
                  docs_per_cpu_s=num_docs / max(result["cpu_seconds"], 1e-9), peak_rss_mb=peak_rss_mb(),
                  disk_mb=disk_mb(folder))
    print(json.dumps(result))


# ---------------------------------------------------------------------- driver
def run_worker(name: str, args, work: Path, model_path: Path | None) -> dict:
    folder = work / f"{name}_{args.docs}"
    shutil.rmtree(folder, ignore_errors=True)
    command = [sys.executable, __file__, "--worker", name, "--folder", str(folder), "--docs", str(args.docs),
               "--queries", str(args.queries), "--ef", str(args.ef), "--hnsw-threshold", str(args.hnsw_threshold),
               "--batch-size", str(args.batch_size), "--precomputed", str(args.precomputed or 0),
               "--torch-threads", str(args.torch_threads)]
    if args.ef_sweep:
        command += ["--ef-sweep", args.ef_sweep]
    if model_path is not None:
        command += ["--model-path", str(model_path)]
    if args.peer_max_docs:
        command += ["--peer-max-docs", str(args.peer_max_docs)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    completed = subprocess.run(command, capture_output=True, text=True, env=env)
    if completed.returncode != 0:
        print(completed.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{name} failed")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    shutil.rmtree(folder, ignore_errors=True)
    return result


def print_table(model: str, results: dict[str, dict]) -> None:
    print(f"\n== {model}, {next(iter(results.values()))['docs']} documents "
          f"(st_local: {results.get('st_local', {}).get('docs', '-')}) ==")
    print(f"{'contestant':<10}{'docs/s':>10}{'docs/cpu-s':>12}{'search ms/q':>13}{'recall@10':>11}{'HNSW':>6}"
          f"{'peak RSS MB':>13}{'disk MB':>9}")
    for name, r in results.items():
        print(f"{name:<10}{r['docs_per_s']:>10.0f}{r['docs_per_cpu_s']:>12.0f}{r['search_ms']:>13.2f}"
              f"{r['recall@10']:>11.3f}{'yes' if r['hnsw'] else 'no':>6}{r['peak_rss_mb']:>13.0f}{r['disk_mb']:>9.1f}")
    ours = results["textdml"]
    for peer in ("st_local", "st_edge"):
        if peer in results:
            # docs/cpu-s: textdml tokenises and upserts in helper threads, so wall time alone would
            # hide the cores it uses; per CPU second it is compared on the work done.
            print(f"textdml vs {peer}: {ours['docs_per_s'] / results[peer]['docs_per_s']:.1f}x docs/s, "
                  f"{ours['docs_per_cpu_s'] / results[peer]['docs_per_cpu_s']:.1f}x docs per CPU second, "
                  f"search {results[peer]['search_ms'] / ours['search_ms']:.1f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--model", choices=["tiny", "minilm", "both"], default="both")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", type=int, default=256, help="search-time HNSW ef (textdml's default)")
    parser.add_argument("--hnsw-threshold", type=int, default=20_000, help="textdml's index.hnsw_threshold")
    parser.add_argument("--batch-size", type=int, default=1024, help="textdml's index.batch_size")
    parser.add_argument("--peer-max-docs", type=int, default=None,
                        help="index at most this many documents with the slow local-mode loop (its docs/s is then "
                             "measured on fewer documents, and its search time is lower than at the full size)")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads, every contestant")
    parser.add_argument("--contestants", default=None,
                        help="default: textdml,st_local,st_edge; with --precomputed: textdml (add st_local to compare)")
    parser.add_argument("--precomputed", type=int, default=0, help="index N precomputed 384-d vectors via textdml")
    parser.add_argument("--ef-sweep", default=None,
                        help="comma-separated search_ef values: textdml's graph searched with each (ms, recall@10)")
    parser.add_argument("--hnsw-sweep", default=None, help="comma-separated sizes: exact vs HNSW on Edge")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_index_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f} (the machine's other work slows every "
          "contestant alike: compare ratios)")
    if args.hnsw_sweep:
        hnsw_sweep([int(n) for n in args.hnsw_sweep.split(",")], args.ef, args.queries)
        return
    if args.precomputed:
        # No model at all: the engines alone, on the vector size of all-MiniLM-L6-v2.
        names = ["precomputed"] + (["precomputed_local"] if "st_local" in (args.contestants or "").split(",") else [])
        results = {name: run_worker(name, args, work, None) for name in names}
        for name, result in results.items():
            who = "textdml (Edge)" if name == "precomputed" else "local-mode upsert loop"
            print(f"\n{args.precomputed} precomputed 384-d vectors through {who}: {result['docs_per_s']:.0f} "
                  f"points/s, HNSW built: {result['hnsw']}, peak RSS {result['peak_rss_mb']:.0f} MB, "
                  f"disk {result['disk_mb']:.0f} MB")
        if "precomputed_local" in results:
            print(f"textdml vs local-mode loop: "
                  f"{results['precomputed']['docs_per_s'] / results['precomputed_local']['docs_per_s']:.1f}x points/s")
        return
    models = ["tiny", "minilm"] if args.model == "both" else [args.model]
    for model in models:
        model_path = model_folder(model, work)
        contestants = (args.contestants or "textdml,st_local,st_edge").split(",")
        results = {name: run_worker(name, args, work, model_path) for name in contestants}
        print_table(model, results)
        for row in results.get("textdml", {}).get("ef_sweep", []):
            print(f"textdml search_ef={row['ef']:<5} {row['search_ms']:.2f} ms/query, recall@10 {row['recall@10']:.3f}")


if __name__ == "__main__":
    main()
