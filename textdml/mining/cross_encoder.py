"""Rescoring mined candidates with a cross-encoder (a ``transformers`` sequence-classification model)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


class CrossEncoderScorer:
    """Scores (query, document) pairs jointly, as sentence-transformers' ``CrossEncoder.predict``.

    A model with one output gives ``sigmoid(logit)`` (sentence-transformers' default activation
    for one label); with several outputs, the softmax probability of the last class (the
    "relevant" class of a binary classifier).

    Args:
        name_or_path: a local folder (or Hub id) of a sequence-classification model.
        max_length: pairs are truncated to this many tokens.
        batch_size: pairs scored together.
    """

    def __init__(self, name_or_path: str | os.PathLike, max_length: int = 256, batch_size: int = 32):
        path = Path(name_or_path)
        if path.exists() and not (path / "config.json").is_file():
            raise ValueError(f"cross-encoder {str(name_or_path)!r} is not a model folder (no config.json in it); pass "
                             "the folder of a transformers sequence-classification model")
        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(name_or_path)
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        except (OSError, ValueError) as err:
            raise ValueError(f"cross-encoder {str(name_or_path)!r} could not be loaded as a sequence-classification "
                             f"model: {err}") from err
        self.model.eval()
        self.max_length = max_length
        self.batch_size = batch_size
        self.name = str(name_or_path)

    @torch.inference_mode()
    def predict(self, pairs: list[tuple[str, str]]) -> torch.Tensor:
        """One relevance score per pair, float32 ``(len(pairs),)``."""
        scores = []
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start : start + self.batch_size]
            features = self.tokenizer([q for q, _ in chunk], [d for _, d in chunk], padding=True, truncation=True,
                                      max_length=self.max_length, return_tensors="pt")
            logits = self.model(**features).logits.float()  # (B, num_labels)
            scores.append(torch.sigmoid(logits[:, 0]) if logits.shape[1] == 1 else logits.softmax(-1)[:, -1])
        return torch.cat(scores) if scores else torch.empty(0)
