"""Rows with images -> a batch of pixels (+ tokenised captions or class ids), decoded per batch.

Decoding and transforms run here, so with ``training.num_workers > 0`` they run in DataLoader
workers, and nothing is decoded up front.
"""

from __future__ import annotations

from typing import Any

import torch

from textdml.data.collator import text_ids
from textdml.data.images import ImageRoles, load_image


class ImageTextCollator:
    """``{"image": (B, 3, H, W), "text": features, "labels", "ref_labels"}`` for image–text pairs
    (captions equal in text share a label, so a repeated caption is not a negative), or
    ``{"image": ..., "labels": class ids}`` for labelled images.

    Args:
        model: the dual encoder (its ``preprocess`` and ``tokenize``).
        roles: from ``resolve_image_roles``.
        label_ids: raw label -> class id, for labelled images.
    """

    def __init__(self, model: Any, roles: ImageRoles, label_ids: dict[Any, int] | None = None):
        self.model = model
        self.roles = roles
        self.label_ids = label_ids

    def __call__(self, rows: list[dict]) -> dict[str, Any]:
        roles = self.roles
        pixels = torch.stack([self.model.preprocess(load_image(row[roles.image], roles.image, position))
                              for position, row in enumerate(rows)])
        if roles.kind == "labelled_images":
            labels = []
            for position, row in enumerate(rows):
                if row[roles.label] not in self.label_ids:  # type: ignore[operator]
                    raise ValueError(f"column {roles.label!r}: row {position} of this batch has label "
                                     f"{row[roles.label]!r}, which is not among the training classes")
                labels.append(self.label_ids[row[roles.label]])  # type: ignore[index]
            return {"image": pixels, "labels": torch.tensor(labels)}
        captions = [row[roles.text] for row in rows]
        for position, caption in enumerate(captions):
            if not isinstance(caption, str) or not caption.strip():
                raise ValueError(f"column {roles.text!r}: row {position} of this batch is {caption!r}; "
                                 "every caption must be a non-empty string")
        labels = text_ids(captions)
        return {"image": pixels, "text": self.model.tokenize(captions), "labels": labels, "ref_labels": labels}
