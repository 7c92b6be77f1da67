"""Image–text evaluation: cross-modal retrieval, zero-shot classification, labelled-image retrieval."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from textdml.evaluation.labelled import labelled_metric_names, labelled_retrieval_metrics


def recall_at_k(scores: torch.Tensor, correct: torch.Tensor, ks: Sequence[int]) -> dict[int, float]:
    """Fraction of rows whose top k (by ``scores``, (Q, C)) holds a ``correct`` (Q, C) column."""
    top = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices  # (Q, k)
    hit = correct.gather(1, top)  # (Q, k)
    return {k: hit[:, :k].any(dim=1).float().mean().item() for k in ks}


def prefixed(results: dict[str, float], name: str) -> dict[str, float]:
    return {f"{name}_{k}" if name else k: v for k, v in results.items()}


class ImageTextRetrievalEvaluator:
    """Image -> text and text -> image Recall@K on paired data; equal captions all count as correct.

    Args:
        images: PIL images or file paths.
        texts: the caption of each image.
        ks: cut-offs.
    """

    def __init__(self, images: list[Any], texts: list[str], name: str = "", ks: Sequence[int] = (1, 5, 10),
                 batch_size: int = 64):
        if len(images) != len(texts) or not images:
            raise ValueError(f"need one caption per image, got {len(images)} images and {len(texts)} captions")
        self.images, self.texts, self.name, self.ks, self.batch_size = images, texts, name, tuple(ks), batch_size
        self.primary_metric = prefixed({"mean_recall": 0.0}, name).popitem()[0]
        self.metric_names = list(prefixed(dict.fromkeys([*(f"{way}_recall@{k}" for way in ("i2t", "t2i") for k in self.ks),
                                                         "mean_recall"]), name))

    def __call__(self, model: Any) -> dict[str, float]:
        image_vectors = F.normalize(model.encode_images(self.images, batch_size=self.batch_size, convert_to="torch"), dim=-1)
        text_vectors = F.normalize(model.encode(self.texts, batch_size=self.batch_size, convert_to="torch"), dim=-1)
        scores = image_vectors.float() @ text_vectors.float().T  # (I, T)
        ids = {text: i for i, text in enumerate(dict.fromkeys(self.texts))}
        caption_ids = torch.tensor([ids[text] for text in self.texts])
        correct = caption_ids[:, None] == caption_ids[None, :]  # (I, T): the same caption text
        results = {f"i2t_recall@{k}": v for k, v in recall_at_k(scores, correct, self.ks).items()}
        results |= {f"t2i_recall@{k}": v for k, v in recall_at_k(scores.T, correct.T, self.ks).items()}
        results["mean_recall"] = sum(results.values()) / len(results)
        return prefixed(results, self.name)


class ZeroShotEvaluator:
    """Zero-shot classification from class-name prompts (as CLIP): top-1 / top-5 accuracy.

    A class's vector is the mean of its normalised prompt vectors, normalised again.
    """

    def __init__(self, images: list[Any], labels: list[Any], class_names: dict[Any, str] | None = None,
                 templates: Sequence[str] = ("a photo of {}.", "an emoji of {}."), name: str = "", batch_size: int = 64):
        self.images, self.labels, self.templates, self.name, self.batch_size = images, labels, templates, name, batch_size
        self.classes = sorted(set(labels), key=str)
        self.class_names = class_names or {c: str(c) for c in self.classes}
        self.primary_metric = prefixed({"zero_shot_top1": 0.0}, name).popitem()[0]
        self.metric_names = list(prefixed(dict.fromkeys(["zero_shot_top1", "zero_shot_top5"]), name))

    def __call__(self, model: Any) -> dict[str, float]:
        prompts = [template.format(self.class_names[c]) for c in self.classes for template in self.templates]
        prompt_vectors = F.normalize(model.encode(prompts, batch_size=self.batch_size, convert_to="torch").float(), dim=-1)
        class_vectors = F.normalize(prompt_vectors.view(len(self.classes), len(self.templates), -1).mean(1), dim=-1)
        image_vectors = F.normalize(model.encode_images(self.images, batch_size=self.batch_size,
                                                        convert_to="torch").float(), dim=-1)
        index = {c: i for i, c in enumerate(self.classes)}
        truth = torch.tensor([index[label] for label in self.labels])
        correct = truth[:, None] == torch.arange(len(self.classes))[None, :]
        top = recall_at_k(image_vectors @ class_vectors.T, correct, (1, 5))
        return prefixed({"zero_shot_top1": top[1], "zero_shot_top5": top[5]}, self.name)


class LabelledImageEvaluator:
    """Open-set retrieval among labelled images (held-out classes): Recall@K, MAP@R, R-precision, NMI."""

    def __init__(self, images: list[Any], labels: list[Any], name: str = "", batch_size: int = 64):
        self.images, self.labels, self.name, self.batch_size = images, labels, name, batch_size
        self.primary_metric = prefixed({"recall@1": 0.0}, name).popitem()[0]
        self.metric_names = list(prefixed(dict.fromkeys(labelled_metric_names()), name))

    def __call__(self, model: Any) -> dict[str, float]:
        vectors = model.encode_images(self.images, batch_size=self.batch_size, convert_to="torch").float()
        ids = {label: i for i, label in enumerate(sorted(set(self.labels), key=str))}
        results = labelled_retrieval_metrics(vectors, torch.tensor([ids[label] for label in self.labels]))
        return prefixed({k: float(v) for k, v in results.items()}, self.name)
