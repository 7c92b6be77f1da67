"""Rows -> a tokenised batch, by role name.

Tokenisation happens here, per batch, with dynamic padding: nothing is tokenised up front, so a
100M-row data set starts training at once.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from textdml.data.noise import delete_words
from textdml.data.roles import ColumnRoles


class Tokenizes(Protocol):
    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]: ...

    def tokenize_buckets(self, texts: list[str], bucket_rows: int) -> tuple[list[dict], torch.Tensor]: ...


def text_ids(texts: list[str]) -> torch.Tensor:
    """A stable 63-bit id per text (same on every process), so equal texts get equal labels."""
    ids = [int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little") >> 1 for t in texts]
    return torch.tensor(ids, dtype=torch.long)


@dataclass
class TokenizedRoles:
    """The texts of every role of a batch, tokenised as one or more padded blocks.

    ``blocks`` are embedded one by one and concatenated; ``restore`` (if set) puts the rows back in
    role order (anchors, positives, negatives...), and ``role_sizes`` splits them per role.
    """

    blocks: list[dict[str, torch.Tensor]]
    role_sizes: list[int]
    restore: torch.Tensor | None = None

    def split(self, embeddings: torch.Tensor) -> list[torch.Tensor]:
        """Concatenated block embeddings -> one tensor per role."""
        if self.restore is not None:
            embeddings = embeddings[self.restore.to(embeddings.device)]
        return list(embeddings.split(self.role_sizes))


class RoleCollator:
    """Collate rows of any input kind into ``{"inputs": TokenizedRoles, "labels": ..., ...}``.

    Labels follow the loss contract: for pairs, anchor i and positive i share a label derived from
    the positive's text, so a text repeated in the batch is never used as a negative of itself;
    hard negatives get the label of their own text.

    Args:
        model: the embedder (its ``tokenize`` / ``tokenize_buckets``).
        roles: the resolved column roles.
        label_ids: raw label value -> class id, for labelled data (see ``label_mapping``).
        bucket_rows: tokenise all texts of a batch sorted by length in blocks of this many rows,
            each padded to its own longest text (less padding computed); None pads per role.
        keep_texts: also return the raw texts of each role as ``"texts"`` (a teacher or guide
            model with its own tokenizer embeds them; see ``textdml.training.teacher``).
    """

    def __init__(self, model: Tokenizes, roles: ColumnRoles, label_ids: dict[Any, int] | None = None,
                 bucket_rows: int | None = None, keep_texts: bool = False):
        self.model = model
        self.roles = roles
        self.label_ids = label_ids
        self.bucket_rows = bucket_rows
        self.keep_texts = keep_texts
        # Set for denoising losses (TSDAE): the encoder sees the texts with words deleted at this
        # rate, and the original texts come back tokenised as "targets" for the decoder.
        self.deletion_ratio: float | None = None
        self.noise_rng = random.Random(0)

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

    def with_prompts(self, role_texts: list[list[str]]) -> list[list[str]]:
        """The model's prompts put before the texts: the first role (anchors) are queries, the rest documents.

        Labels were derived from the texts before this, so prompts never change which rows are positives.
        """
        prompts = getattr(self.model, "prompts", None) or {}
        query, document = prompts.get("query", ""), prompts.get("document", "")
        if not (query or document):
            return role_texts
        return [[(query if role == 0 else document) + text for text in texts] for role, texts in enumerate(role_texts)]

    def tokenize_roles(self, role_texts: list[list[str]]) -> TokenizedRoles:
        role_texts = self.with_prompts(role_texts)
        sizes = [len(texts) for texts in role_texts]
        if self.bucket_rows:
            flat = [text for texts in role_texts for text in texts]
            blocks, restore = self.model.tokenize_buckets(flat, self.bucket_rows)
            return TokenizedRoles(blocks, sizes, restore)
        return TokenizedRoles([self.model.tokenize(texts) for texts in role_texts], sizes)

    def __call__(self, rows: list[dict]) -> dict[str, Any]:
        batch = self.collate(rows)
        if self.keep_texts:
            batch["texts"] = self.role_texts(rows)
        return batch

    def role_texts(self, rows: list[dict]) -> list[list[str]]:
        """The raw texts of every role, in the order of ``TokenizedRoles.role_sizes``."""
        roles = self.roles
        texts = [self.texts(rows, roles.anchor)]
        if roles.kind not in ("labelled", "texts"):
            texts.append(self.texts(rows, roles.positive))  # type: ignore[arg-type]
        if roles.kind == "triplets":
            texts.extend(self.negative_texts(rows))
        return texts

    def collate(self, rows: list[dict]) -> dict[str, Any]:
        roles = self.roles
        anchors = self.texts(rows, roles.anchor)
        if roles.kind == "labelled":
            return {"inputs": self.tokenize_roles([anchors]), "labels": self.class_ids(rows)}
        if roles.kind == "texts" and self.deletion_ratio is not None:
            noisy = [delete_words(text, self.deletion_ratio, self.noise_rng) for text in anchors]
            return {"inputs": self.tokenize_roles([noisy]), "labels": text_ids(anchors),
                    "targets": self.model.tokenize(anchors)}
        if roles.kind == "texts":
            # Equal sentences share a label: never negatives of each other (contrastive tension).
            return {"inputs": self.tokenize_roles([anchors]), "labels": text_ids(anchors)}
        positives = self.texts(rows, roles.positive)  # type: ignore[arg-type]
        if roles.kind == "scored_pairs":
            pair_labels = torch.tensor([float(row[roles.label]) for row in rows])  # type: ignore[index]
            return {"inputs": self.tokenize_roles([anchors, positives]), "pair_labels": pair_labels}
        if roles.kind == "scores":
            return {"inputs": self.tokenize_roles([anchors, positives]), "scores": self.scores(rows)}
        negatives = self.negative_texts(rows) if roles.kind == "triplets" else []
        if roles.group is not None:
            labels = text_ids([str(row[roles.group]) for row in rows])
        else:
            labels = text_ids(positives)
        ref_labels = torch.cat([labels, *[text_ids(slot) for slot in negatives]])
        batch = {"inputs": self.tokenize_roles([anchors, positives, *negatives]), "labels": labels,
                 "ref_labels": ref_labels}
        if roles.kind == "triplets" and roles.score is not None:
            batch["teacher_scores"] = self.teacher_scores(rows)
        return batch

    def teacher_scores(self, rows: list[dict]) -> torch.Tensor:
        """A teacher's precomputed scores per row (a number or a list of numbers): ``(B,)`` or ``(B, k)``."""
        column = self.roles.score
        assert column is not None
        values = []
        for position, row in enumerate(rows):
            cell = row[column]
            cells = cell if isinstance(cell, (list, tuple)) else [cell]
            if not cells or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v != v for v in cells):
                raise ValueError(f"column {column!r}: row {position} of this batch is {cell!r}; teacher scores must be "
                                 "a number or a list of numbers")
            values.append([float(v) for v in cells])
        if len({len(v) for v in values}) != 1:
            raise ValueError(f"column {column!r}: rows of one batch hold {sorted({len(v) for v in values})} teacher "
                             "scores; every row needs the same number")
        scores = torch.tensor(values, dtype=torch.float32)
        return scores[:, 0] if scores.shape[1] == 1 and not isinstance(rows[0][column], (list, tuple)) else scores

    def scores(self, rows: list[dict]) -> torch.Tensor:
        """The graded similarity of each pair, as float32; a missing or non-numeric cell is an error."""
        column = self.roles.score
        assert column is not None
        values = []
        for position, row in enumerate(rows):
            value = row[column]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise ValueError(f"column {column!r}: row {position} of this batch has score {value!r}; "
                                 "every score must be a number (drop or fill such rows)")
            values.append(float(value))
        return torch.tensor(values, dtype=torch.float32)

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
