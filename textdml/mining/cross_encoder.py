"""Rescoring mined candidates with a cross-encoder (a ``transformers`` sequence-classification model)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from textdml.models.embedder import resolve_model_folder


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
        folder = cross_encoder_folder(name_or_path)
        try:
            self.model, loading = AutoModelForSequenceClassification.from_pretrained(folder, output_loading_info=True)
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError) as err:
            raise ValueError(f"cross-encoder {str(name_or_path)!r} could not be loaded as a sequence-classification "
                             f"model: {err}") from err
        # transformers fills a missing head with random weights (a warning only): the scores would be noise.
        backbone = f"{self.model.base_model_prefix}."
        new_head = sorted(key for key in loading.get("missing_keys") or () if not key.startswith(backbone))
        if new_head:
            raise ValueError(f"cross-encoder {str(name_or_path)!r} has no classification head (its weights lack "
                             f"{', '.join(new_head[:4])}): it looks like an embedding model, which cannot score pairs; "
                             "pass a trained cross-encoder (a sequence-classification model, e.g. "
                             "cross-encoder/ms-marco-MiniLM-L6-v2)")
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


def cross_encoder_folder(name_or_path: str | os.PathLike) -> Path:
    """The local folder of a cross-encoder (a Hub id is fetched, as for any model); a wrong path is one clear line.

    Without this check ``transformers`` answers a missing path with the Hub's repo-id rules.
    """
    name = str(name_or_path)
    try:
        folder = resolve_model_folder(name)
    except NotADirectoryError as err:
        raise ValueError(f"cross-encoder path {name!r} is a file; pass the folder of a transformers "
                         "sequence-classification model (mine.cross_encoder)") from err
    except FileNotFoundError as err:
        if Path(name).expanduser().is_absolute() or name.startswith(".") or name.count("/") != 1:
            raise ValueError(f"cross-encoder path {name!r} does not exist; pass the folder of a transformers "
                             "sequence-classification model (mine.cross_encoder)") from err
        raise ValueError(f"cross-encoder path {name!r} does not exist here and could not be fetched from the Hugging "
                         "Face Hub; pass a local folder of a sequence-classification model (mine.cross_encoder), or "
                         "run with network access (HF_HUB_OFFLINE unset)") from err
    if not (folder / "config.json").is_file():
        raise ValueError(f"cross-encoder {name!r} is not a model folder (no config.json in it); pass "
                         "the folder of a transformers sequence-classification model")
    return folder
