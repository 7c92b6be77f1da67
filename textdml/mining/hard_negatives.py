"""Hard negatives mined by search: every anchor searches the corpus, negatives come from a rank window.

The selection follows sentence-transformers' ``mine_hard_negatives`` (same window, margins,
score caps and sampling, so with exact search and the same model the negatives are equal), and
differs where its users hit limits:

- the search is a pluggable :class:`~textdml.mining.search.Searcher`: exact blocks in memory (the
  memory is the corpus vectors plus one ``(block, corpus)`` score matrix, never anchors x corpus),
  or the Qdrant collection that will be deployed (``textdml.index``), so mining sees what search
  will see. Mining only searches: opening, creating and versioning a collection is the caller's
  (:mod:`textdml.mining.run` for a recipe, :mod:`textdml.mining.collection_search` underneath);
- every known positive of an anchor is dropped, by corpus position and by text;
- work is written shard by shard under ``output_dir`` with the settings beside it: a killed run
  resumes where it stopped, and the result records how it was made.

Ties: candidates with equal scores keep ``torch.topk``'s order, as sentence-transformers, so
equal vectors give equal negatives; two encoders whose floats differ in the last bits (e.g. a
sentence-transformers model and the same weights in textdml) can swap candidates whose scores
differ by less than that.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from textdml.evaluation.retrieval import encode_for_search
from textdml.mining.collection_search import open_collection_searcher
from textdml.mining.search import CorpusSearcher, ExactSearcher, Searcher, TextSearcher, text_key
from textdml.mining.settings import MiningSettings

if TYPE_CHECKING:
    import datasets

    from textdml.mining.cross_encoder import CrossEncoderScorer
    from textdml.models.protocols import SupportsEncode

logger = logging.getLogger(__name__)

SETTINGS_FILE = "mining_settings.json"
RESULT_FILE = "mined.parquet"
FILLED = "filled_with_random"  # counted beside the skipped candidates: slots given a random document
# The keywords with which mine_hard_negatives opened a collection itself (deprecated: pass searcher=).
COLLECTION_KEYWORDS = ("collection", "engine", "force", "search_options", "index_options", "own_versions")

# ExactSearcher, Searcher and text_key live in textdml.mining.search; their old import path keeps working.
__all__ = ["ExactSearcher", "Searcher", "mine_hard_negatives", "mining_documents", "text_key"]


@dataclass
class MiningTask:
    """The anchors, the corpus and who is whose positive, deduplicated by text."""

    queries: list[str]  # unique anchors, first-appearance order
    corpus: list[str]  # unique documents: the given corpus, then positives not in it
    positives: list[list[int]]  # per query, corpus positions of its positives (first-appearance order)

    @property
    def max_positives(self) -> int:
        return max(len(p) for p in self.positives)


def build_task(anchors: Sequence[str], positives: Sequence[str], corpus: Sequence[str] | None) -> MiningTask:
    documents = list(dict.fromkeys([*(corpus or []), *positives]))
    position = {text: i for i, text in enumerate(documents)}
    query_position: dict[str, int] = {}
    query_positives: list[list[int]] = []
    for anchor, positive in zip(anchors, positives, strict=True):
        q = query_position.setdefault(anchor, len(query_position))
        if q == len(query_positives):
            query_positives.append([])
        if position[positive] not in query_positives[q]:
            query_positives[q].append(position[positive])
    return MiningTask(list(query_position), documents, query_positives)


def default_range_max(settings: MiningSettings, max_positives: int) -> int:
    per_negative = 10 if settings.filters else 1
    return settings.range_min + settings.num_negatives * per_negative + max_positives


def select_negatives(
    scores: torch.Tensor,
    positions: torch.Tensor,
    positive_scores: list[torch.Tensor],
    positive_positions: list[list[int]],
    positive_keys: list[set[bytes]],
    corpus_keys: list[bytes],
    settings: MiningSettings,
    range_max: int,
    generator: random.Random,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, int]]:
    """Candidates ``(Q, k)`` -> negatives ``(Q, num_negatives)`` positions and scores (``-inf``: none left).

    Every filter of sentence-transformers, in its order: positives out, then the margins against
    the hardest (lowest-scoring) positive, the score caps, the rank window, the sampling.
    """
    scores = scores.clone()
    skipped: dict[str, int] = {}
    for q in range(len(scores)):
        known = set(positive_positions[q])
        for j, p in enumerate(positions[q].tolist()):
            if p < 0 or p in known or corpus_keys[p] in positive_keys[q]:
                scores[q, j] = -float("inf")
    hardest_positive = torch.stack([s.min() for s in positive_scores]).unsqueeze(1)  # (Q, 1)

    def drop(mask: torch.Tensor, reason: str) -> None:
        mask = mask & torch.isfinite(scores)
        if mask.any():
            skipped[reason] = skipped.get(reason, 0) + int(mask.sum())
        scores[mask] = -float("inf")

    if settings.absolute_margin is not None:
        drop(scores + settings.absolute_margin > hardest_positive, "absolute_margin")
    if settings.relative_margin is not None:
        drop(scores > hardest_positive - hardest_positive.abs() * settings.relative_margin, "relative_margin")
    if settings.max_score is not None:
        drop(scores > settings.max_score, "max_score")
    if settings.min_score is not None:
        drop(scores < settings.min_score, "min_score")

    window = min(range_max, scores.shape[1])
    top_scores, local = torch.topk(scores, k=window, dim=1)
    top_positions = torch.gather(positions, 1, local)[:, settings.range_min :]
    top_scores = top_scores[:, settings.range_min :]
    k = settings.num_negatives
    if settings.sampling_strategy == "top" or top_scores.shape[1] <= k:
        return top_positions[:, :k], top_scores[:, :k], skipped
    picked_positions, picked_scores = [], []
    for q in range(len(top_scores)):
        options = max(int(torch.isfinite(top_scores[q]).sum()), k)
        chosen = sorted(generator.sample(range(options), k=k))  # sorted: the hardest first, as ST re-sorts
        picked_positions.append(top_positions[q, chosen])
        picked_scores.append(top_scores[q, chosen])
    return torch.stack(picked_positions), torch.stack(picked_scores), skipped


def settings_fingerprint(record: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


def mine_hard_negatives(
    dataset: datasets.Dataset,
    model: SupportsEncode,
    *,
    anchor_column: str = "anchor",
    positive_column: str = "positive",
    corpus: Sequence[str] | None = None,
    settings: MiningSettings | None = None,
    cross_encoder: CrossEncoderScorer | None = None,
    searcher: Searcher | None = None,
    output_dir: str | Path | None = None,
    batch_size: int = 64,
    shard_size: int = 4096,
    show_progress_bar: bool = True,
    **deprecated: Any,
) -> datasets.Dataset:
    """Add ``negative_1..k`` columns (and ``scores``) to ``(anchor, positive)`` rows by searching the corpus.

    Args:
        dataset: rows with ``anchor_column`` and ``positive_column`` (text).
        model: the encoder (anchors are encoded with its "query" prompt, documents with its
            "document" prompt, when it has them).
        anchor_column / positive_column: the columns to read.
        corpus: candidate documents besides the positives (default: the positives alone).
        settings: :class:`MiningSettings` (default: its defaults).
        cross_encoder: rescore candidates and positives with this model before filtering.
        searcher: where candidates come from (default: exact search over the encoded corpus);
            its positions index the deduplicated corpus (the given corpus, then new positives). A
            :class:`~textdml.mining.search.CorpusSearcher` (a Qdrant collection, opened by
            :func:`~textdml.mining.collection_search.open_collection_searcher` over
            :func:`mining_documents`) brings its own documents into the corpus and is recorded in
            ``mining_settings.json`` (the version searched).
        output_dir: write ``mined.parquet`` and ``mining_settings.json`` here, with per-shard
            progress so that a killed run resumes (same inputs and settings) instead of restarting.
        batch_size: encoding batch size.
        shard_size: anchors mined (and saved) per step.
        show_progress_bar: a tqdm bar over the anchors.
        **deprecated: still working for one release, to be removed after it:

            - keywords named like :class:`MiningSettings` fields override ``settings``;
            - ``collection``, ``engine``, ``force``, ``search_options``, ``index_options``,
              ``own_versions``: mining opened the collection itself. Open it with
              :func:`~textdml.mining.collection_search.open_collection_searcher` (the same
              arguments) and pass it as ``searcher=``; this is what they do.

    Returns:
        A ``datasets.Dataset`` with ``anchor, positive, negative_1..k, scores`` (``scores`` =
        ``[positive, negative_1, ..., negative_k]``), one row per (unique anchor, positive).
        Rows left with fewer than ``num_negatives`` candidates after filtering are dropped and
        counted in the log and in the settings file, or with ``fill_with_random`` get random
        documents in the free slots (scored ``nan`` when searching a collection or rescoring with
        a cross-encoder).

    Raises:
        ValueError: missing columns, empty dataset, impossible window, a corpus smaller than the
            negatives asked for; ``collection`` without ``engine`` or with ``searcher``, or indexed
            by another model (unless ``force``).
    """
    from datasets import Dataset

    through = {key: deprecated.pop(key) for key in COLLECTION_KEYWORDS if key in deprecated}
    settings = dataclasses.replace(settings or MiningSettings(), **deprecated)
    settings.validate()
    anchors, positives = read_pairs(dataset, anchor_column, positive_column)
    if through.get("collection") is not None:
        searcher = collection_searcher(model, build_task(anchors, positives, corpus).corpus, searcher,
                                       batch_size=batch_size, show_progress_bar=show_progress_bar, **through)
    if isinstance(searcher, CorpusSearcher):  # a collection: its documents join the corpus
        corpus = searcher.corpus
    task = build_task(anchors, positives, corpus)
    range_max = settings.range_max or default_range_max(settings, task.max_positives)
    if len(task.corpus) - 1 < settings.num_negatives:
        raise ValueError(f"the corpus holds {len(task.corpus)} unique documents: too few to mine "
                         f"{settings.num_negatives} negatives besides a positive; pass a larger corpus=")
    if range_max + task.max_positives > len(task.corpus):
        logger.info("range_max %d (+%d positives) exceeds the corpus of %d documents: searching the whole corpus",
                    range_max, task.max_positives, len(task.corpus))

    out = Path(output_dir) if output_dir is not None else None
    record = {"settings": dataclasses.asdict(settings), "range_max": range_max, "model": model.identity(),
              "cross_encoder": getattr(cross_encoder, "name", None), "anchor_column": anchor_column,
              "positive_column": positive_column, "num_queries": len(task.queries), "corpus_size": len(task.corpus),
              "corpus_sha256": hashlib.sha256("\n".join(task.corpus).encode()).hexdigest(),
              "queries_sha256": hashlib.sha256("\n".join(task.queries).encode()).hexdigest(),
              "shard_size": shard_size}
    if isinstance(searcher, CorpusSearcher):  # which version was searched is recorded, not fingerprinted
        record["collection"] = searcher.settings()
    fingerprint = settings_fingerprint(record)
    shard_dir = prepare_output(out, fingerprint) if out is not None else None

    corpus_vectors = None
    if searcher is None:
        corpus_vectors = encode_for_search(model, task.corpus, batch_size, show_progress_bar, "document")
        searcher = ExactSearcher(corpus_vectors)
    corpus_keys = [text_key(t) for t in task.corpus]
    generator = random.Random(settings.seed)
    rows = empty_rows(settings.num_negatives)
    totals: dict[str, int] = {}
    skipped_total: dict[str, int] = {}
    starts = range(0, len(task.queries), shard_size)
    with tqdm(total=len(task.queries), desc="Mining hard negatives", unit="anchor",
              disable=not show_progress_bar) as progress:
        for shard, start in enumerate(starts):
            shard_file = None if shard_dir is None else shard_dir / f"shard-{shard:05d}.parquet"
            queries = task.queries[start : start + shard_size]
            if shard_file is not None and shard_file.exists():
                part = read_shard(shard_file)
                saved = json.loads(shard_file.with_suffix(".rng.json").read_text())
                # Random sampling goes on from where an unbroken run would have left the generator.
                generator.setstate(to_state(saved["state"]))
                skipped = saved.get("skipped", {})  # so that the settings file counts the whole table
            else:
                part, skipped = mine_shard(task, start, queries, model, searcher, corpus_vectors, corpus_keys,
                                           settings, range_max, cross_encoder, generator, batch_size)
                if shard_file is not None:
                    write_shard(shard_file, part, generator, skipped)
            for reason, count in skipped.items():
                skipped_total[reason] = skipped_total.get(reason, 0) + count
            for key in rows:
                rows[key].extend(part[key])
            progress.update(len(queries))
    expected_rows = sum(len(p) for p in task.positives)
    totals["rows"] = len(rows["anchor"])
    totals["dropped_rows"] = expected_rows - totals["rows"]
    if totals["dropped_rows"]:
        logger.warning("%d of %d rows had fewer than %d negatives left after filtering and were dropped; widen "
                       "range_max or loosen the margins / max_score to keep them", totals["dropped_rows"],
                       expected_rows, settings.num_negatives)
    for reason, count in skipped_total.items():
        if reason == FILLED:
            logger.info("filled %d negative slots left empty by the filters with random documents", count)
        else:
            logger.info("skipped %d candidates by %s", count, reason)
    result = Dataset.from_dict(rows)
    if out is not None:
        result.to_parquet(str(out / RESULT_FILE))
        if isinstance(searcher, CorpusSearcher):
            record["collection"] = searcher.record()
        write_json_atomic(out / SETTINGS_FILE, {**record, "fingerprint": fingerprint, **totals,
                                                "skipped_candidates": skipped_total})
    return result


def read_pairs(dataset: datasets.Dataset, anchor_column: str, positive_column: str) -> tuple[list[str], list[str]]:
    """The anchors and positives to mine; missing columns or no rows are errors."""
    missing = [c for c in (anchor_column, positive_column) if c not in dataset.column_names]
    if missing:
        raise ValueError(f"mining needs columns {missing}, the data has {dataset.column_names}; pass anchor_column= / "
                         "positive_column= (CLI: --anchor-column / --positive-column)")
    if len(dataset) == 0:
        raise ValueError("the dataset to mine is empty")
    return list(dataset[anchor_column]), list(dataset[positive_column])


def mining_documents(dataset: datasets.Dataset, *, anchor_column: str = "anchor", positive_column: str = "positive",
                     corpus: Sequence[str] | None = None) -> list[str]:
    """The unique documents a mining of ``dataset`` searches (the given corpus, then the positives):
    what a collection searcher is opened over, so that its positions and mining's agree."""
    anchors, positives = read_pairs(dataset, anchor_column, positive_column)
    return build_task(anchors, positives, corpus).corpus


def collection_searcher(model: SupportsEncode, documents: list[str], searcher: Searcher | None, *, collection: str,
                        engine: Any = None, batch_size: int, show_progress_bar: bool, **options: Any) -> Searcher:
    """The deprecated ``mine_hard_negatives(collection=...)``: the searcher it now gets as ``searcher=``."""
    if searcher is not None:
        raise ValueError("pass searcher= or collection=, not both: a collection brings its own searcher")
    if engine is None:
        raise ValueError(f"collection={collection!r} needs engine=, the index that holds it: "
                         "engine=textdml.index.open_client(path=...) (or url=...)")
    return open_collection_searcher(model, engine, collection, documents, batch_size=batch_size,
                                    show_progress_bar=show_progress_bar, **options)


def empty_rows(num_negatives: int) -> dict[str, list]:
    """The columns of a mined table: ``anchor, positive, negative_1..k, scores``."""
    return {"anchor": [], "positive": [], **{f"negative_{i}": [] for i in range(1, num_negatives + 1)}, "scores": []}


def mine_shard(task: MiningTask, start: int, queries: list[str], model: SupportsEncode, searcher: Searcher,
               corpus_vectors: torch.Tensor | None, corpus_keys: list[bytes], settings: MiningSettings,
               range_max: int, cross_encoder: CrossEncoderScorer | None, generator: random.Random,
               batch_size: int) -> tuple[dict[str, list], dict[str, int]]:
    """Mine the anchors ``task.queries[start : start + len(queries)]``."""
    positives = task.positives[start : start + len(queries)]
    query_vectors = encode_for_search(model, queries, batch_size, False, "query")
    if isinstance(searcher, TextSearcher):  # a sparse or hybrid collection: BM25 reads the query words
        scores, positions = searcher.search_texts(query_vectors, queries, range_max + task.max_positives)
    else:
        scores, positions = searcher.search(query_vectors, range_max + task.max_positives)
    if corpus_vectors is None:  # a collection: positive scores need the positives' vectors
        unique = sorted({p for ps in positives for p in ps})
        vectors = dict(zip(unique, encode_for_search(model, [task.corpus[p] for p in unique], batch_size, False,
                                                     "document"), strict=True))
        positive_vectors = [torch.stack([vectors[p] for p in ps]) for ps in positives]
    else:
        positive_vectors = [corpus_vectors[ps] for ps in positives]
    positive_scores = [vectors @ query for vectors, query in zip(positive_vectors, query_vectors, strict=True)]
    if cross_encoder is not None:
        flat = [(q, task.corpus[p]) for q, row in zip(queries, positions.tolist(), strict=True) for p in row]
        scores = cross_encoder.predict(flat).view_as(scores)
        pairs = [(q, task.corpus[p]) for q, ps in zip(queries, positives, strict=True) for p in ps]
        flat_positive = cross_encoder.predict(pairs).split([len(ps) for ps in positives])
        positive_scores = list(flat_positive)
    positive_keys = [{corpus_keys[p] for p in ps} for ps in positives]
    negatives, negative_scores, skipped = select_negatives(scores, positions, positive_scores, positives,
                                                           positive_keys, corpus_keys, settings, range_max, generator)
    if settings.fill_with_random:
        # Fillers are scored by the bi-encoder only when its scores are the ones in the table.
        negatives, negative_scores, skipped[FILLED] = fill_with_random(
            negatives, negative_scores, positives, positive_keys, corpus_keys, query_vectors,
            corpus_vectors if cross_encoder is None else None, settings.num_negatives, generator)
    rows = empty_rows(settings.num_negatives)
    for q, query in enumerate(queries):
        if (negative_scores[q] == -float("inf")).any() or negatives.shape[1] < settings.num_negatives:
            continue
        for p, positive in enumerate(positives[q]):
            rows["anchor"].append(query)
            rows["positive"].append(task.corpus[positive])
            for i, n in enumerate(negatives[q].tolist(), start=1):
                rows[f"negative_{i}"].append(task.corpus[n])
            rows["scores"].append([float(positive_scores[q][p]), *map(float, negative_scores[q])])
    return rows, skipped


def fill_with_random(negatives: torch.Tensor, negative_scores: torch.Tensor, positives: list[list[int]],
                     positive_keys: list[set[bytes]], corpus_keys: list[bytes], query_vectors: torch.Tensor,
                     corpus_vectors: torch.Tensor | None, num_negatives: int,
                     generator: random.Random) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Fill the slots no candidate survived (score ``-inf``) with random corpus documents.

    A filler is never a known positive (by position or text) nor a negative the row already has.
    Its score is the model's (``nan`` when searching a collection, whose vectors are not in
    memory). Returns the negatives, their scores and how many slots were filled.
    """
    if negatives.shape[1] < num_negatives:  # fewer candidates than negatives asked for: widen
        missing = num_negatives - negatives.shape[1]
        negatives = torch.cat([negatives, negatives.new_zeros(len(negatives), missing)], dim=1)
        negative_scores = torch.cat([negative_scores, negative_scores.new_full((len(negatives), missing),
                                                                                -float("inf"))], dim=1)
    negatives, negative_scores = negatives.clone(), negative_scores.clone()
    filled = 0
    for q in range(len(negatives)):
        empty = negative_scores[q] == -float("inf")  # select_negatives' mark of a slot no candidate filled
        free = empty.nonzero().flatten().tolist()
        if not free:
            continue
        taken = set(positives[q]) | set(negatives[q][~empty].tolist())
        for slot in free:
            if len(taken) >= len(corpus_keys):  # nothing left to fill with: the row is dropped
                break
            while True:  # rejection sampling: the corpus holds more than num_negatives + positives documents
                pick = generator.randrange(len(corpus_keys))
                if pick not in taken and corpus_keys[pick] not in positive_keys[q]:
                    break
            taken.add(pick)
            negatives[q, slot] = pick
            negative_scores[q, slot] = (float(corpus_vectors[pick] @ query_vectors[q]) if corpus_vectors is not None
                                        else float("nan"))
            filled += 1
    return negatives, negative_scores, filled


def prepare_output(out: Path, fingerprint: str) -> Path:
    """The shard folder of this run; shards of a run with other inputs or settings are an error."""
    shard_dir = out / "shards"
    marker = shard_dir / "FINGERPRINT"
    if marker.exists() and marker.read_text().strip() != fingerprint:
        raise ValueError(f"{out} holds a mining run with other data, model or settings (fingerprint "
                         f"{marker.read_text().strip()}, this run {fingerprint}); pass another output_dir or delete it")
    shard_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint + "\n")
    return shard_dir


def write_shard(path: Path, rows: dict[str, list], generator: random.Random, skipped: dict[str, int]) -> None:
    """Save a mined shard with what resuming needs: the generator after it and its skipped-candidate counts."""
    from datasets import Dataset

    state = generator.getstate()
    rng_file = path.with_suffix(".rng.json")
    write_json_atomic(rng_file, {"state": [state[0], list(state[1]), state[2]], "skipped": skipped})
    tmp = path.with_suffix(".tmp")
    Dataset.from_dict(rows).to_parquet(str(tmp))
    tmp.replace(path)  # a shard exists whole or not at all


def read_shard(path: Path) -> dict[str, list]:
    """A saved shard's rows; pyarrow directly, because ``datasets`` refuses a shard whose rows were all dropped."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pydict()


def to_state(saved: list) -> tuple:
    return saved[0], tuple(saved[1]), saved[2]


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)
