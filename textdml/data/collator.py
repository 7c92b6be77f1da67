"""Rows -> a tokenised batch, by role name.

Tokenisation happens here, per batch, with dynamic padding: nothing is tokenised up front, so a
100M-row data set starts training at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import torch

from textdml.data.roles import ColumnRoles

Tokenize = Callable[[list[str]], dict[str, torch.Tensor]]


def text_ids(texts: list[str]) -> torch.Tensor:
    """A stable 63-bit id per text (same on every process), so equal texts get equal labels."""
    ids = [int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little") >> 1 for t in texts]
    return torch.tensor(ids, dtype=torch.long)


class RoleCollator:
    """Collate rows of any input kind into ``{"anchor": features, "positive": ..., "negatives": [...], ...}``.

    Labels follow the loss contract: for pairs, anchor i and positive i share a label derived from
    the positive's text, so a text repeated in the batch is never used as a negative of itself;
    hard negatives get the label of their own text.

    Args:
        tokenize: the embedder's ``tokenize``.
        roles: the resolved column roles.
        label_ids: raw label value -> class id, for labelled data (see ``label_mapping``).
    """

    def __init__(self, tokenize: Tokenize, roles: ColumnRoles, label_ids: dict[Any, int] | None = None):
        self.tokenize = tokenize
        self.roles = roles
        self.label_ids = label_ids

    def texts(self, rows: list[dict], column: str) -> list[str]:
        values = [row[column] for row in rows]
        for position, value in enumerate(values):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(
                    f"column {column!r}: row {position} of this batch is {value!r}; every text must be a non-empty string"
                )
        return values

    def negative_texts(self, rows: list[dict]) -> list[list[str]]:
        """One list of texts per negative slot (slot j holds every row's j-th negative)."""
        roles = self.roles
        if not roles.negative_is_list:
            return [self.texts(rows, column) for column in roles.negatives]
        column = roles.negatives[0]
        counts = {len(row[column]) for row in rows}
        if len(counts) != 1:
            raise ValueError(f"list column {column!r}: rows in one batch hold {sorted(counts)} negatives; "
                             "every row needs the same number")
        slots = [[row[column][j] for row in rows] for j in range(counts.pop())]
        for slot in slots:
            self.texts([{column: t} for t in slot], column)
        return slots

    def __call__(self, rows: list[dict]) -> dict[str, Any]:
        roles = self.roles
        anchors = self.texts(rows, roles.anchor)
        batch: dict[str, Any] = {"anchor": self.tokenize(anchors)}
        if roles.kind == "labelled":
            batch["labels"] = self.class_ids(rows)
            return batch
        positives = self.texts(rows, roles.positive)  # type: ignore[arg-type]
        batch["positive"] = self.tokenize(positives)
        if roles.kind == "scored_pairs":
            batch["pair_labels"] = torch.tensor([float(row[roles.label]) for row in rows])  # type: ignore[index]
            return batch
        negatives = self.negative_texts(rows) if roles.kind == "triplets" else []
        batch["negatives"] = [self.tokenize(slot) for slot in negatives]
        if roles.group is not None:
            groups = text_ids([str(row[roles.group]) for row in rows])
            batch["labels"], batch["ref_labels"] = groups, torch.cat([groups, *[text_ids(s) for s in negatives]])
        else:
            positive_ids = text_ids(positives)
            batch["labels"] = positive_ids
            batch["ref_labels"] = torch.cat([positive_ids, *[text_ids(slot) for slot in negatives]])
        return batch

    def class_ids(self, rows: list[dict]) -> torch.Tensor:
        column = self.roles.label
        assert column is not None and self.label_ids is not None
        ids = []
        for position, row in enumerate(rows):
            value = row[column]
            if value not in self.label_ids:
                raise ValueError(f"column {column!r}: row {position} of this batch has label {value!r}, "
                                 "which is not among the training classes")
            ids.append(self.label_ids[value])
        return torch.tensor(ids, dtype=torch.long)
