"""Where a command writes: it replaces only what it wrote itself, unless told ``--force``.

A folder a command fills (``textdml push``'s staged folder, ``textdml merge``'s model) carries a
marker file naming the command and listing the files it wrote, with their sizes and times. Running
the command again replaces such a folder; a folder without the marker, written by another command,
or holding a file added or changed since, is refused with one line that names the path and the way
out (another path, or ``--force``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

MARKER = ".textdml-output"


def refuse(path: Path, problem: str, instead: str) -> FileExistsError:
    """The one-line error for an output that must not be replaced."""
    return FileExistsError(f"{str(path)!r} {problem}: {instead}, or pass --force to replace it")


def foreign_files(folder: Path, command: str) -> list[str] | None:
    """The files of ``folder`` that ``command`` did not write there (None: it wrote none of it)."""
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("written_by") != command:
        return None
    written = marker.get("files")
    if written is None:  # stopped while writing: all of it is the command's
        return []
    return [name for name, stat in file_stats(folder).items() if written.get(name) != stat]


def file_stats(folder: Path) -> dict[str, list[int]]:
    return {p.relative_to(folder).as_posix(): [p.stat().st_size, p.stat().st_mtime_ns]
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MARKER}


def check_apart(output: Path, source: Path, output_name: str, source_name: str) -> None:
    """Refuse an output that is ``source``, lies inside it or holds it (``--force`` does not help:
    replacing it would delete what is being read)."""
    out, src = output.resolve(), source.resolve()
    if out == src or src in out.parents or out in src.parents:
        raise ValueError(f"the {output_name} {str(output)!r} must be a folder apart from the {source_name} "
                         f"{str(source)!r}, neither inside it nor holding it: name another folder")


def check_replaceable(path: Path, command: str, *, force: bool, instead: str) -> None:
    """Raise ``FileExistsError`` unless ``path`` is missing, an empty folder, a folder ``command``
    wrote and nobody changed since, or ``force`` is given.

    Args:
        path: the folder the command is about to (re)create.
        command: e.g. ``"textdml push"``: only its own marker counts.
        force: replace whatever is there.
        instead: the other way out, e.g. ``"name a new folder with --output"``.
    """
    if force or not (path.exists() or path.is_symlink()):
        return
    if not path.is_dir() or path.is_symlink():
        raise refuse(path, "exists and is not a folder", instead)
    if not any(path.iterdir()):
        return
    foreign = foreign_files(path, command)
    if foreign is None:
        names = sorted(p.name for p in path.iterdir())
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        raise refuse(path, f"exists and was not written by {command} (it holds {shown})", instead)
    if foreign:
        raise refuse(path, f"holds {', '.join(foreign[:4])}, added or changed since {command} wrote it", instead)


def start_output_folder(path: Path, command: str, *, force: bool, instead: str) -> Path:
    """Check ``path`` (see ``check_replaceable``), then make it an empty folder marked as ``command``'s."""
    check_replaceable(path, command, force=force, instead=instead)
    remove_path(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text(json.dumps({"written_by": command, "files": None}) + "\n")
    return path


def remove_path(path: Path) -> None:
    """Delete a file, a link (not what it points to) or a folder with all it holds; nothing if missing."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def seal_output_folder(path: Path) -> None:
    """Record the files now in ``path``: whatever is added or changed later is not the command's."""
    marker = json.loads((path / MARKER).read_text())
    marker["files"] = file_stats(path)
    (path / MARKER).write_text(json.dumps(marker, indent=1) + "\n")


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest existing parent (``shutil.disk_usage`` needs a path that exists)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
