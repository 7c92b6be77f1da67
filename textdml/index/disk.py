"""Room on disk for a new version, checked before anything is written.

Qdrant Edge memory-maps its write-ahead log and segment files: on a full disk a write to a mapped
page cannot fail with an error, the process dies with SIGBUS and leaves a half-built version
behind. So an indexing run into a local folder first estimates what it will write and stops with a
clear error when the disk has less room. The estimate is deliberately generous: every vector twice
(write-ahead log and segment), a kibibyte of id and payload per point, and the files an empty
collection preallocates (about 100 MiB measured on Qdrant Edge: two 32 MiB WAL segments and the
segment's mapped files).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from textdml.outputs import nearest_existing

MiB = 2**20
# What an empty Qdrant Edge collection maps (its files are sparse: written pages need real room).
COLLECTION_OVERHEAD_BYTES = 100 * MiB
# Ids, payload and index entries of one point, beyond its vectors (a generous average).
POINT_OVERHEAD_BYTES = 1024
# Each vector is written to the write-ahead log and again to its segment.
VECTOR_COPIES = 2


def estimate_bytes(points: int | None, floats_per_point: int) -> int:
    """Bytes a new collection of ``points`` points of ``floats_per_point`` float32 coordinates (all its
    vectors together) takes on disk; with ``points`` unknown (a stream), the empty collection's.

    Example:
        >>> estimate_bytes(1000, 384) // MiB
        103
    """
    per_point = VECTOR_COPIES * floats_per_point * 4 + POINT_OVERHEAD_BYTES
    return COLLECTION_OVERHEAD_BYTES + (points or 0) * per_point


def check_free_space(folder: str | os.PathLike, points: int | None, floats_per_point: int) -> None:
    """Raise ``ValueError`` naming ``folder``, the room needed and the room free when the disk lacks it."""
    folder = Path(folder)
    free = shutil.disk_usage(nearest_existing(folder)).free
    need = estimate_bytes(points, floats_per_point)
    if free < need:
        what = f"{points} points of {floats_per_point} float32 coordinates" if points else "an empty collection"
        raise ValueError(f"not enough disk space for a new version in {str(folder)!r}: about {need / MiB:,.0f} MiB "
                         f"needed ({what}, with Qdrant's write-ahead log and files), {free / MiB:,.0f} MiB free; "
                         "free space on that disk, or point index.path at a disk with room")
