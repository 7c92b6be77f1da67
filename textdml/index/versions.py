"""Versioned collections: every indexing run writes a new version, an alias names the live one.

A version is a collection named ``<collection>__<first 8 hex of the weights hash>__<UTC time>``,
e.g. ``docs__1a2b3c4d__20261201T224501123``. Its metadata says which model wrote it, when, how many
points it holds, which payload fields its documents have, and whether it is complete
(``status: ready``) or still being written (``building``). The alias ``<collection>`` is moved to a
version only once it is complete and its point count checked, in one atomic step, so a search
through the alias never sees a half-written version. ``rollback`` moves it back to the version it
replaced; an unfinished version (a run killed mid-way) is resumed by the next run with the same model.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from textdml.index.engine import VectorEngine, VectorSpec
from textdml.models.identity import ModelIdentity

METADATA_VERSION = 1
SEPARATOR = "__"
VERSION_PATTERN = re.compile(r"^(?P<collection>.+)__(?P<model>[0-9a-f]{8})__(?P<time>\d{8}T\d{9})$")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def version_name(collection: str, identity: ModelIdentity, now: dt.datetime | None = None) -> str:
    """``docs__1a2b3c4d__20261201T224501123``: the collection, the model, the UTC time to the millisecond.

    Example:
        >>> ident = ModelIdentity("m", "1a2b3c4d" + "0" * 56, 8, "cosine")
        >>> version_name("docs", ident, dt.datetime(2026, 12, 1, 22, 45, 1, 123456, tzinfo=dt.timezone.utc))
        'docs__1a2b3c4d__20261201T224501123'
    """
    if SEPARATOR in collection:
        raise ValueError(f"collection name {collection!r} must not contain {SEPARATOR!r} (it separates version parts)")
    now = now or utc_now()
    return f"{collection}{SEPARATOR}{identity.short_id}{SEPARATOR}{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}"


def new_metadata(collection: str, identity: ModelIdentity, id_field: str, text_field: str) -> dict[str, Any]:
    return {"textdml": METADATA_VERSION, "collection": collection, "status": "building",
            "identity": identity.to_dict(), "created": utc_now().isoformat(timespec="seconds"), "finished": None,
            "points": 0, "fields": [], "id_field": id_field, "text_field": text_field, "replaced": None}


@dataclass(frozen=True)
class VersionInfo:
    """One version of a collection, as ``textdml collections`` lists it."""

    name: str
    collection: str
    status: str
    identity: ModelIdentity | None
    created: str
    points: int
    live: bool
    replaced: str | None
    fields: tuple[str, ...]
    # The sparse source of a hybrid version (``index.sparse``), None for a dense-only one.
    sparse: dict[str, Any] | None = None

    @classmethod
    def from_metadata(cls, name: str, metadata: Mapping[str, Any], live: bool) -> VersionInfo:
        identity = metadata.get("identity")
        return cls(name=name, collection=str(metadata.get("collection", name)), status=str(metadata.get("status", "?")),
                   identity=ModelIdentity.from_dict(identity) if identity else None,
                   created=str(metadata.get("created", "")), points=int(metadata.get("points", 0)), live=live,
                   replaced=metadata.get("replaced"), fields=tuple(metadata.get("fields", ())),
                   sparse=dict(metadata["sparse"]) if metadata.get("sparse") else None)


def is_textdml_collection(metadata: Mapping[str, Any]) -> bool:
    return metadata.get("textdml") == METADATA_VERSION


def list_versions(engine: VectorEngine, collection: str | None = None) -> list[VersionInfo]:
    """Every textdml-written collection (of ``collection`` only, when given), oldest first."""
    live = set(engine.aliases().values())
    versions = []
    for name in engine.list_collections():
        metadata = engine.collection_info(name, count=False).metadata
        if not is_textdml_collection(metadata):
            continue
        info = VersionInfo.from_metadata(name, metadata, live=name in live)
        if collection is None or info.collection == collection:
            versions.append(info)
    return sorted(versions, key=lambda v: (v.collection, v.created, written_at(v.name), v.name))


def versions_of(engine: VectorEngine, collection: str) -> list[VersionInfo]:
    """The versions of ``collection``; an unknown name is an error that lists the collections there are
    (an empty table would read as "it has no versions" when the name was mistyped)."""
    everything = list_versions(engine)
    versions = [v for v in everything if v.collection == collection]
    if versions:
        return versions
    known = sorted({v.collection for v in everything})
    if not known:
        raise ValueError(f"no versioned collection {collection!r} in {engine.location}: it holds no versioned "
                         "collection yet (run `textdml index` first)")
    close = difflib.get_close_matches(collection, known, n=1)
    raise ValueError(f"no versioned collection {collection!r} in {engine.location}"
                     + (f": did you mean {close[0]!r}?" if close else "")
                     + f"; versioned collections there: {', '.join(known)}")


def written_at(name: str) -> str:
    """The millisecond time in a version's name: it orders versions created within one second
    (``created`` has second resolution); empty for a collection named otherwise."""
    match = VERSION_PATTERN.match(name)
    return match["time"] if match else ""


def resumable_version(engine: VectorEngine, collection: str, identity: ModelIdentity,
                      vectors: Mapping[str, VectorSpec] | None = None,
                      sparse: Mapping[str, Any] | None = None) -> str | None:
    """The newest unfinished version of ``collection`` written by this model (a killed run), if any;
    with ``vectors``, only one of that layout (a dual encoder writes text and image-text collections);
    only one with the same sparse source ``sparse`` (its identity; None: a dense-only version)."""
    candidates = [v for v in list_versions(engine, collection) if v.status == "building" and v.identity is not None
                  and v.identity.same_vectors(identity) and not v.live
                  and (v.sparse or None) == (dict(sparse) if sparse else None)
                  and (vectors is None or dict(engine.collection_info(v.name, count=False).vectors) == dict(vectors))]
    return candidates[-1].name if candidates else None


def publish(engine: VectorEngine, collection: str, version: str) -> str | None:
    """Point alias ``collection`` at a complete ``version`` (atomically); return the version it replaced."""
    metadata = engine.collection_info(version).metadata
    if metadata.get("status") != "ready":
        raise ValueError(f"version {version!r} is not complete (status {metadata.get('status')!r}); it cannot go live")
    previous = engine.aliases().get(collection)
    if previous != version:
        engine.set_metadata(version, {**metadata, "replaced": previous if previous else metadata.get("replaced")})
        engine.set_alias(collection, version)
    return previous


def rollback(engine: VectorEngine, collection: str, to: str | None = None) -> str:
    """Point alias ``collection`` back at the version the live one replaced (or at ``to``); return it."""
    aliases = engine.aliases()
    versions = {v.name: v for v in list_versions(engine, collection)}
    if collection not in aliases:
        raise ValueError(f"{collection!r} is not an alias in {engine.location}; {engine.describe_contents()}")
    live = aliases[collection]
    if to is None:
        target = versions[live].replaced if live in versions else None
        if target is None or target not in versions:
            older = [v.name for v in versions.values() if v.status == "ready" and v.name != live
                     and v.created <= versions.get(live, v).created]
            if not older:
                raise ValueError(f"collection {collection!r} has no earlier complete version to roll back to "
                                 f"(versions: {sorted(versions) or 'none'})")
            target = older[-1]
    else:
        target = to
    if target not in versions:
        raise ValueError(f"{target!r} is no version of {collection!r}; versions: {sorted(versions)}")
    if versions[target].status != "ready":
        raise ValueError(f"version {target!r} is not complete (status {versions[target].status!r})")
    engine.set_alias(collection, target)
    return target


def delete_version(engine: VectorEngine, version: str, force: bool = False) -> None:
    """Remove one version; the live one only with ``force`` (its alias goes with it)."""
    if not engine.collection_exists(version):
        raise ValueError(f"no collection {version!r} in {engine.location}; {engine.describe_contents()}")
    pointing = sorted(alias for alias, target in engine.aliases().items() if target == version)
    if pointing and not force:
        raise ValueError(f"{version!r} is live (alias {', '.join(pointing)}): roll back first, or pass --force to "
                         "delete it and leave the alias unset")
    for alias in pointing:
        engine.delete_alias(alias)
    engine.delete_collection(version)


def format_versions(versions: list[VersionInfo]) -> str:
    """The table ``textdml collections`` prints."""
    if not versions:
        return "no versioned collection"
    rows = [("", "version", "status", "points", "created (UTC)", "model")]
    for v in versions:
        model = v.identity.describe() if v.identity else "?"
        if v.sparse:
            from textdml.index.sparse import describe_sparse

            model += f" + {describe_sparse(v.sparse)}"
        rows.append(("*" if v.live else "", v.name, v.status, str(v.points), v.created, model))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines) + "\n(* = live: the alias points at it)"
