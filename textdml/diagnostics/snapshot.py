"""The eval set through the model before and after training: similarity samples and embeddings.

``diagnostics/eval_before.npz`` and ``diagnostics/eval_after.npz`` in the run folder hold cosine
similarities of positive and negative pairs of a sample of the eval set, and a sample of
embeddings with their group (class label, or ``query`` / ``document``, ``image`` / ``text``) for
the report's histograms and 2-D projection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

MAX_ROWS = 256  # eval rows embedded per snapshot: enough for a histogram, cheap next to an evaluation
MAX_PAIRS = 20000  # similarities kept per side


@dataclass
class EvalSnapshot:
    """Similarities of positive / negative eval pairs and a sample of embeddings.

    Attributes:
        positive: cosine similarities of positive pairs.
        negative: cosine similarities of negative pairs (a sample).
        embeddings: (N, D) embeddings for the projection.
        groups: the colour group of each embedding row.
        grouping: what the groups are: ``class``, ``role`` (query / document) or ``modality``.
    """

    positive: np.ndarray
    negative: np.ndarray
    embeddings: np.ndarray
    groups: np.ndarray
    grouping: str

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, positive=self.positive, negative=self.negative, embeddings=self.embeddings,
                            groups=self.groups.astype(str), grouping=np.array(self.grouping))
        return path

    @classmethod
    def load(cls, path: str | Path) -> EvalSnapshot:
        with np.load(path, allow_pickle=False) as data:
            return cls(data["positive"], data["negative"], data["embeddings"], data["groups"], str(data["grouping"]))


def split_pairs(sim: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The similarities under each mask, each side subsampled to ``MAX_PAIRS``."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for mask in (positive, negative):
        values = sim[mask].float().cpu()
        if len(values) > MAX_PAIRS:
            values = values[torch.randperm(len(values), generator=generator)[:MAX_PAIRS]]
        out.append(values.numpy())
    return out[0], out[1]


def sample_indices(n: int, rows: int = MAX_ROWS, seed: int = 0) -> list[int]:
    if n <= rows:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, size=rows, replace=False).tolist())


def unit(x: Any) -> torch.Tensor:
    return F.normalize(torch.as_tensor(x).float().cpu(), dim=-1)


def labelled_snapshot(vectors: torch.Tensor, labels: list[Any]) -> EvalSnapshot:
    ids = {label: i for i, label in enumerate(dict.fromkeys(labels))}
    label_ids = torch.tensor([ids[label] for label in labels])
    vectors = unit(vectors)
    same = label_ids[:, None] == label_ids[None, :]
    upper = torch.ones_like(same).triu(diagonal=1)
    positive, negative = split_pairs(vectors @ vectors.T, same & upper, ~same & upper)
    return EvalSnapshot(positive, negative, vectors.numpy(), np.array([str(x) for x in labels]), "class")


def paired_snapshot(queries: torch.Tensor, documents: torch.Tensor, relevant: torch.Tensor,
                    names: tuple[str, str]) -> EvalSnapshot:
    """Queries (Q, D) against documents (K, D); ``relevant`` (Q, K) marks the positive pairs."""
    queries, documents = unit(queries), unit(documents)
    positive, negative = split_pairs(queries @ documents.T, relevant, ~relevant)
    groups = np.array([names[0]] * len(queries) + [names[1]] * len(documents))
    return EvalSnapshot(positive, negative, torch.cat([queries, documents]).numpy(), groups, "role"
                        if names[0] == "query" else "modality")


def snapshot_from_evaluator(model: Any, evaluator: Any) -> EvalSnapshot | None:
    """Embed a sample of the evaluator's data; None for evaluators of unknown kind."""
    from textdml.evaluation.build import CombinedEvaluator, LabelledRetrievalEvaluator
    from textdml.evaluation.image_text import ImageTextRetrievalEvaluator, LabelledImageEvaluator
    from textdml.evaluation.retrieval import InformationRetrievalEvaluator

    if isinstance(evaluator, CombinedEvaluator):
        evaluator = evaluator.evaluators[0]
    batch_size = getattr(evaluator, "batch_size", 64)
    if isinstance(evaluator, LabelledRetrievalEvaluator):
        rows = sample_indices(len(evaluator.texts))
        vectors = model.encode([evaluator.texts[i] for i in rows], batch_size=batch_size, convert_to="torch")
        return labelled_snapshot(vectors, [evaluator.labels[i] for i in rows])
    if isinstance(evaluator, LabelledImageEvaluator):
        rows = sample_indices(len(evaluator.images))
        vectors = model.encode_images([evaluator.images[i] for i in rows], batch_size=batch_size, convert_to="torch")
        return labelled_snapshot(vectors, [evaluator.labels[i] for i in rows])
    if isinstance(evaluator, ImageTextRetrievalEvaluator):
        rows = sample_indices(len(evaluator.images))
        captions = [evaluator.texts[i] for i in rows]
        images = model.encode_images([evaluator.images[i] for i in rows], batch_size=batch_size, convert_to="torch")
        texts = model.encode(captions, batch_size=batch_size, convert_to="torch")
        ids = {text: i for i, text in enumerate(dict.fromkeys(captions))}
        caption_ids = torch.tensor([ids[text] for text in captions])
        return paired_snapshot(images, texts, caption_ids[:, None] == caption_ids[None, :], ("image", "text"))
    if isinstance(evaluator, InformationRetrievalEvaluator):
        rows = sample_indices(len(evaluator.queries))
        query_ids = [evaluator.query_ids[i] for i in rows]
        wanted = {doc for qid in query_ids for doc in evaluator.relevant_docs[qid]}
        position = {doc_id: i for i, doc_id in enumerate(evaluator.corpus_ids)}
        doc_ids = sorted(d for d in wanted if d in position)
        others = [d for d in evaluator.corpus_ids if d not in wanted][: max(0, MAX_ROWS - len(doc_ids))]
        doc_ids += others
        queries = model.encode([evaluator.queries[i] for i in rows], batch_size=batch_size, convert_to="torch")
        documents = model.encode([evaluator.corpus[position[d]] for d in doc_ids], batch_size=batch_size,
                                 convert_to="torch")
        relevant = torch.tensor([[d in evaluator.relevant_docs[q] for d in doc_ids] for q in query_ids])
        return paired_snapshot(queries, documents, relevant, ("query", "document"))
    return None


def save_eval_snapshot(model: Any, evaluator: Any, run_dir: str | Path, when: str) -> Path | None:
    """Write ``diagnostics/eval_<when>.npz``; a failure is logged, never raised (the run matters more)."""
    if evaluator is None:
        return None
    try:
        with torch.no_grad():
            snapshot = snapshot_from_evaluator(model, evaluator)
    except Exception as err:  # noqa: BLE001 - the report notes the missing plot
        logger.warning("could not embed the eval set for the report (%s: %s)", type(err).__name__, err)
        return None
    if snapshot is None:
        return None
    return snapshot.save(Path(run_dir) / "diagnostics" / f"eval_{when}.npz")
