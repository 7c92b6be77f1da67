"""Search filters: qdrant-client's ``models.Filter`` everywhere, parsed from ``--filter field=value``
on the command line, translated for Qdrant Edge, and checked against the fields a collection holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from textdml.registry import did_you_mean

if TYPE_CHECKING:
    from qdrant_client import models


def parse_filters(expressions: Sequence[str]) -> models.Filter | None:
    """``["lang=en", "year=2020"]`` -> a filter whose conditions must all match (values parsed as YAML,
    so ``year=2020`` matches the integer 2020 and ``flag=true`` the boolean).

    Example:
        >>> parse_filters(["lang=en"]).must[0].match.value
        'en'
        >>> parse_filters([]) is None
        True
    """
    import yaml
    from qdrant_client import models

    conditions: list[models.Condition] = []
    for expression in expressions:
        key, sep, raw = expression.partition("=")
        if not sep or not key.strip() or raw == "":
            raise ValueError(f"--filter {expression!r} must look like field=value, e.g. --filter lang=en")
        value = yaml.safe_load(raw)
        if isinstance(value, (list, tuple)):
            match: Any = models.MatchAny(any=list(value))
        elif isinstance(value, (str, int, bool)):
            match = models.MatchValue(value=value)
        else:  # floats and dates have no exact match in Qdrant: compare them as written
            match = models.MatchValue(value=raw)
        conditions.append(models.FieldCondition(key=key.strip(), match=match))
    return models.Filter(must=conditions) if conditions else None


def as_list(conditions: Any) -> list[Any]:
    if conditions is None:
        return []
    return list(conditions) if isinstance(conditions, (list, tuple)) else [conditions]


def filter_fields(filter: models.Filter | None) -> set[str]:
    """Top-level payload fields a filter reads (a nested key counts by its first part)."""
    fields: set[str] = set()
    if filter is None:
        return fields
    from qdrant_client import models
    groups = [filter.must, filter.should, filter.must_not, filter.min_should.conditions if filter.min_should else None]
    for condition in (c for group in groups for c in as_list(group)):
        if isinstance(condition, models.Filter):
            fields |= filter_fields(condition)
        elif isinstance(condition, models.FieldCondition):
            fields.add(condition.key)
        elif isinstance(condition, models.IsEmptyCondition):
            fields.add(condition.is_empty.key)
        elif isinstance(condition, models.IsNullCondition):
            fields.add(condition.is_null.key)
        elif isinstance(condition, models.NestedCondition):
            fields.add(condition.nested.key)
    return {name.split(".")[0].split("[")[0] for name in fields}


def check_filter_fields(filter: models.Filter | None, known_fields: Iterable[str] | None, collection: str) -> None:
    """A filter on a field no document has would silently return nothing: say so instead."""
    if filter is None or known_fields is None:
        return
    known = sorted(set(known_fields))
    unknown = sorted(filter_fields(filter) - set(known))
    if unknown:
        hint = did_you_mean(unknown[0], known) if known else "it stores no payload field"
        raise ValueError(f"filter on field(s) {unknown} that no document of collection {collection!r} has; "
                         f"payload fields: {known}. {hint}")


# ---------------------------------------------------------------------- to Qdrant Edge
def to_edge_filter(filter: models.Filter | None) -> Any:
    """The same filter as ``qdrant_edge`` objects (Edge has its own classes, same semantics)."""
    if filter is None:
        return None
    import qdrant_edge as qe

    min_should = None
    if filter.min_should is not None:
        min_should = qe.MinShould([to_edge_condition(c) for c in filter.min_should.conditions],
                                  filter.min_should.min_count)
    return qe.Filter(
        must=[to_edge_condition(c) for c in as_list(filter.must)] or None,
        should=[to_edge_condition(c) for c in as_list(filter.should)] or None,
        must_not=[to_edge_condition(c) for c in as_list(filter.must_not)] or None,
        min_should=min_should,
    )


def to_edge_condition(condition: Any) -> Any:
    import qdrant_edge as qe
    from qdrant_client import models

    if isinstance(condition, models.Filter):
        return to_edge_filter(condition)
    if isinstance(condition, models.FieldCondition):
        kwargs: dict[str, Any] = {}
        if condition.match is not None:
            kwargs["match"] = to_edge_match(condition.match)
        if condition.range is not None:
            bounds = {k: getattr(condition.range, k) for k in ("gte", "gt", "lte", "lt")}
            if isinstance(condition.range, models.DatetimeRange):
                kwargs["range"] = qe.RangeDateTime(**{k: None if v is None else str(v) for k, v in bounds.items()})
            else:
                kwargs["range"] = qe.RangeFloat(**bounds)
        if condition.values_count is not None:
            kwargs["values_count"] = qe.ValuesCount(**{k: getattr(condition.values_count, k)
                                                       for k in ("lt", "gt", "lte", "gte")})
        if condition.is_empty is not None:
            kwargs["is_empty"] = condition.is_empty
        if condition.is_null is not None:
            kwargs["is_null"] = condition.is_null
        if condition.geo_bounding_box or condition.geo_radius or condition.geo_polygon:
            raise ValueError("geo filters are not supported on the edge engine yet; use index.engine=client")
        return qe.FieldCondition(key=condition.key, **kwargs)
    if isinstance(condition, models.IsEmptyCondition):
        return qe.IsEmptyCondition(condition.is_empty.key)
    if isinstance(condition, models.IsNullCondition):
        return qe.IsNullCondition(condition.is_null.key)
    if isinstance(condition, models.HasIdCondition):
        return qe.HasIdCondition(set(condition.has_id))
    if isinstance(condition, models.NestedCondition):
        return qe.NestedCondition(condition.nested.key, to_edge_filter(condition.nested.filter))
    raise ValueError(f"filter condition {type(condition).__name__} is not supported on the edge engine; "
                     "use a FieldCondition, IsEmpty, IsNull, HasId, Nested or a nested Filter")


def to_edge_match(match: Any) -> Any:
    import qdrant_edge as qe
    from qdrant_client import models

    if isinstance(match, models.MatchValue):
        if isinstance(match.value, bool):
            # qdrant-edge-py 0.9.0 reads a Python bool as the integer 0/1 (which never matches a
            # boolean payload); numpy's bool reaches its boolean branch.
            import numpy as np

            return qe.MatchValue(np.bool_(match.value))
        return qe.MatchValue(match.value)
    if isinstance(match, models.MatchAny):
        return qe.MatchAny(list(match.any))
    if isinstance(match, models.MatchExcept):
        return qe.MatchExcept(list(match.except_))
    if isinstance(match, models.MatchText):
        return qe.MatchText(match.text)
    if isinstance(match, models.MatchTextAny):
        return qe.MatchTextAny(match.text_any)
    if isinstance(match, models.MatchPhrase):
        return qe.MatchPhrase(match.phrase)
    raise ValueError(f"match {type(match).__name__} is not supported on the edge engine")
