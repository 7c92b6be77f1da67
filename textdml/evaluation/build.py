"""Evaluators from held-out data: pairs -> retrieval, labelled rows -> open-set metrics."""

from __future__ import annotations

from typing import Any

from datasets import Dataset

from textdml.config import DataConfig, EvalConfig
from textdml.data.loading import load_data
from textdml.data.roles import resolve_roles


def load_eval_dataset(data: DataConfig) -> Dataset:
    dataset = load_data(data.path, split=data.split, name=data.name, data_files=data.data_files,
                        max_rows=data.max_rows, **data.options)
    if not isinstance(dataset, Dataset):
        raise ValueError("evaluation data must be a map-style Dataset (streaming=false)")
    return dataset


def retrieval_task_from_pairs(dataset: Dataset, anchor: str, positive: str,
                              max_corpus: int | None = None) -> tuple[dict, dict, dict]:
    """Queries = anchors, corpus = the distinct positives, relevant = the positive's text (by id)."""
    corpus_ids: dict[str, str] = {}
    queries, relevant = {}, {}
    for row, (query, document) in enumerate(zip(dataset[anchor], dataset[positive])):
        if document not in corpus_ids:
            if max_corpus is not None and len(corpus_ids) >= max_corpus:
                continue  # keep the corpus bounded: skip queries whose document did not fit
            corpus_ids[document] = f"d{len(corpus_ids)}"
        queries[f"q{row}"] = query
        relevant.setdefault(f"q{row}", set()).add(corpus_ids[document])
    corpus = {doc_id: text for text, doc_id in corpus_ids.items()}
    return queries, corpus, relevant


class LabelledRetrievalEvaluator:
    """Open-set retrieval on labelled rows (held-out classes): Recall@K, MAP@R, R-precision, NMI."""

    primary_metric = "recall@1"

    def __init__(self, texts: list[str], labels: list[Any], name: str = "", batch_size: int = 64):
        from textdml.evaluation.labelled import labelled_metric_names

        self.texts, self.labels, self.name, self.batch_size = texts, labels, name, batch_size
        prefix = f"{name}_" if name else ""
        self.metric_names = [f"{prefix}{key}" for key in labelled_metric_names()]

    def __call__(self, model: Any) -> dict[str, float]:
        import torch

        from textdml.evaluation.labelled import labelled_retrieval_metrics

        embeddings = model.encode(self.texts, batch_size=self.batch_size, convert_to="torch")
        ids = {label: i for i, label in enumerate(sorted(set(self.labels), key=str))}
        labels = torch.tensor([ids[label] for label in self.labels])
        results = labelled_retrieval_metrics(embeddings, labels,
                                             distance="cosine" if model.similarity == "cosine" else "dot")
        prefix = f"{self.name}_" if self.name else ""
        return {f"{prefix}{k}": float(v) for k, v in results.items()}


def build_evaluator(config: EvalConfig, name: str = "") -> Any | None:
    """An evaluator for ``config.data``, or None when no evaluation data is configured."""
    if config.data is None or not config.data.path:
        return None
    return evaluator_from_dataset(load_eval_dataset(config.data), config, name)


def evaluator_from_dataset(dataset: Dataset, config: EvalConfig, name: str = "") -> Any:
    """The evaluator for held-out rows already loaded: pairs -> retrieval, labelled -> open-set,
    images -> image-text metrics. Columns play roles by name (``config.data.columns`` renames)."""
    from textdml.evaluation.retrieval import InformationRetrievalEvaluator

    columns = config.data.columns if config.data is not None else {}
    if "image" in dataset.column_names or "image" in columns:
        return build_image_evaluator(dataset, config, name)
    source = f"eval data {config.data.path!r}" if config.data is not None else "the eval data"
    roles = resolve_roles(dataset.column_names, "evaluation",
                          ("pairs", "triplets", "scored_pairs", "scores", "labelled"), columns, source=source)
    if roles.kind == "scores":
        from textdml.evaluation.similarity import EmbeddingSimilarityEvaluator

        return EmbeddingSimilarityEvaluator(list(dataset[roles.anchor]), list(dataset[roles.positive]),
                                            list(dataset[roles.score]), name, config.batch_size)
    if roles.kind == "labelled":
        return LabelledRetrievalEvaluator(list(dataset[roles.anchor]), list(dataset[roles.label]), name, config.batch_size)
    queries, corpus, relevant = retrieval_task_from_pairs(dataset, roles.anchor, roles.positive, config.max_corpus)
    return InformationRetrievalEvaluator(queries, corpus, relevant, name=name, batch_size=config.batch_size,
                                         truncate_dims=config.truncate_dims)


def build_image_evaluator(dataset: Dataset, config: EvalConfig, name: str = "") -> Any:
    """Captions -> image/text retrieval; labels -> open-set retrieval among the held-out classes."""
    from textdml.data.images import resolve_image_roles
    from textdml.evaluation.image_text import ImageTextRetrievalEvaluator, LabelledImageEvaluator, ZeroShotEvaluator

    roles = resolve_image_roles(dataset.column_names, "evaluation", ("image_text", "labelled_images"),
                                config.data.columns if config.data is not None else {})
    images = list(dataset[roles.image])
    if roles.kind == "image_text":
        return ImageTextRetrievalEvaluator(images, list(dataset[roles.text]), name, batch_size=config.batch_size)
    labels = list(dataset[roles.label])
    # Held-out classes two ways: retrieval among the images, and zero-shot from the class names.
    return CombinedEvaluator([LabelledImageEvaluator(images, labels, name, batch_size=config.batch_size),
                              ZeroShotEvaluator(images, labels, class_names=readable_class_names(labels), name=name,
                                                batch_size=config.batch_size)])


def readable_class_names(labels: list[Any]) -> dict[Any, str]:
    """Class ids as prompt words: ``animal-mammal`` -> ``animal mammal``."""
    return {label: str(label).replace("-", " ").replace("_", " ") for label in set(labels)}


class CombinedEvaluator:
    """Several evaluators as one: their results merged; the first one's primary metric."""

    def __init__(self, evaluators: list[Any]):
        self.evaluators = evaluators
        self.primary_metric = evaluators[0].primary_metric
        names = [getattr(evaluator, "metric_names", None) for evaluator in evaluators]
        self.metric_names = None if None in names else [key for part in names for key in part]

    def __call__(self, model: Any) -> dict[str, float]:
        results: dict[str, float] = {}
        for evaluator in self.evaluators:
            results |= evaluator(model)
        return results
