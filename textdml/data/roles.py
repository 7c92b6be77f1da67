"""Dataset columns -> roles (anchor, positive, negatives, label, score), by name, never by position.

A loss declares the input kinds it trains on; the dataset's columns decide which kind it is. A
mismatch is an error that names the missing column, the columns found and the loss.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from textdml.registry import closest_names, did_you_mean

ROLES = ("anchor", "positive", "negative", "label", "score", "group")

# What each input kind needs, in words for error messages.
KIND_COLUMNS: dict[str, str] = {
    "triplets": "anchor, positive, negative (or negative_1..n, or a list column 'negative'), optional score "
                "(a teacher's precomputed scores, for distillation)",
    "scored_pairs": "anchor, positive, label (0/1 per pair)",
    "scores": "anchor, positive, score (a graded similarity per pair)",
    "pairs": "anchor, positive",
    "labelled": "anchor, label (a class per row)",
    "texts": "anchor (plain sentences, no pairs or labels)",
}

NEGATIVE_COLUMN = re.compile(r"^negative(?:_(\d+))?$")


@dataclass(frozen=True)
class ColumnRoles:
    """Which dataset column plays which role, and the input kind that follows."""

    kind: str
    anchor: str
    positive: str | None = None
    negatives: tuple[str, ...] = ()
    label: str | None = None
    group: str | None = None
    negative_is_list: bool = False
    extra: dict = field(default_factory=dict)
    score: str | None = None

    @property
    def text_columns(self) -> list[str]:
        return [c for c in (self.anchor, self.positive, *self.negatives) if c is not None]


def resolve_roles(
    column_names: Iterable[str],
    loss_name: str,
    input_kinds: Iterable[str],
    rename: dict[str, str] | None = None,
    list_columns: Iterable[str] = (),
    source: str = "the dataset",
) -> ColumnRoles:
    """Map columns to roles and check that the loss can train on them.

    Args:
        column_names: the dataset's columns.
        loss_name: for error messages.
        input_kinds: what the loss accepts (``BaseLoss.input_kinds``).
        rename: role -> column, e.g. ``{"anchor": "question", "positive": "answer"}``.
        list_columns: columns whose values are lists (a list column ``negative``).
        source: which data the columns are from, for error messages (``"train data 'pairs.jsonl'"``).
    """
    columns = list(column_names)
    rename = dict(rename or {})
    for role, column in rename.items():
        if role not in ROLES and not NEGATIVE_COLUMN.match(role):
            raise ValueError(f"columns: unknown role {role!r}; roles are {', '.join(ROLES)}")
        if column not in columns:
            raise ValueError(
                f"{source}: columns: role {role!r} is mapped to column {column!r}, which it does not have; "
                f"{did_you_mean(column, columns)} (columns found: {columns})"
            )
    role_of = {column: role for role, column in rename.items()}

    def column_for(role: str) -> str | None:
        if role in rename:
            return rename[role]
        return role if role in columns and role not in role_of else None

    anchor = column_for("anchor")
    positive = column_for("positive")
    label = column_for("label")
    group = column_for("group")
    score = column_for("score")
    negatives = find_negative_columns(columns, rename, role_of)
    negative_is_list = len(negatives) == 1 and negatives[0] in set(list_columns)

    kinds = list(input_kinds)
    if anchor is None:
        raise ValueError(missing_message("anchor", columns, loss_name, kinds, source))
    if positive is not None and score is not None and not negatives:
        kind = "scores"
    elif positive is not None and negatives:
        kind = "triplets"
    elif positive is not None and label is not None:
        kind = "scored_pairs"
    elif positive is not None:
        kind = "pairs"
    elif label is not None:
        kind = "labelled"
    elif "texts" in kinds:  # unsupervised losses (contrastive tension, TSDAE) need only sentences
        kind = "texts"
    else:
        raise ValueError(missing_message("positive", columns, loss_name, kinds, source, also="label"))
    if kind not in kinds:
        raise ValueError(
            f"{source}: loss {loss_name!r} trains on {' or '.join(f'{k} [{KIND_COLUMNS[k]}]' for k in kinds)}, "
            f"but the dataset's columns {columns} make it {kind} [{KIND_COLUMNS[kind]}]. "
            f"Pick a loss for {kind} or map the columns with `columns: {{role: column}}`."
        )
    return ColumnRoles(kind, anchor, positive, tuple(negatives), label, group, negative_is_list,
                       score=score if kind in ("scores", "triplets") else None)


def find_negative_columns(columns: list[str], rename: dict[str, str], role_of: dict[str, str]) -> list[str]:
    """``negative``, or ``negative_1..n`` in numeric order, or columns renamed to those roles."""
    found: list[tuple[int, str]] = []
    for role, column in rename.items():
        match = NEGATIVE_COLUMN.match(role)
        if match:
            found.append((int(match.group(1) or 0), column))
    if not found:
        for column in columns:
            match = NEGATIVE_COLUMN.match(column)
            if match and column not in role_of:
                found.append((int(match.group(1) or 0), column))
    return [column for _, column in sorted(found)]


def missing_message(role: str, columns: list[str], loss_name: str, kinds: list[str], source: str = "the dataset",
                    also: str | None = None) -> str:
    """No column plays ``role`` (or ``also``): say which data, which columns it has, and the closest one."""
    roles = f"'{role}'" + (f" or '{also}'" if also else "")
    close = [(wanted, column) for wanted in (role, also) if wanted for column in closest_names(wanted, columns)]
    hint = (f"did you mean {close[0][1]!r}? map it with `columns: {{{close[0][0]}: {close[0][1]}}}`" if close
            else "rename columns in the data or map them in the recipe, e.g. "
            "`columns: {anchor: question, positive: answer}`")
    return (
        f"{source} has no column for role {roles} (columns found: {columns}); loss {loss_name!r} trains on "
        f"{' or '.join(f'{k} [{KIND_COLUMNS[k]}]' for k in kinds)}: {hint}"
    )
