"""Local data files that cannot be read get an error naming the file and the line (or byte).

``datasets`` reads JSON lines with pyarrow, whose messages ("Expected object or value at
position 40") name neither; non-UTF-8 bytes are sometimes replaced silently; a file of blank
lines reports "corresponds to no data". These checks say which file, which line or byte, and
what to do.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path

TEXT_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")
CHUNK = 1 << 24  # 16 MiB: the decode check reads at C speed without holding the file in memory


class DataFileError(ValueError):
    """A local data file that cannot be read as its suffix says."""


def check_text_file(path: Path) -> None:
    """UTF-8 throughout and not only blank lines, else ``DataFileError`` (file and byte offset)."""
    if path.suffix.lower() not in TEXT_SUFFIXES:
        return
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, content = 0, False
    with open(path, "rb") as file:
        while True:
            chunk = file.read(CHUNK)
            final = not chunk
            pending = len(decoder.getstate()[0])  # bytes of a character split across chunks
            try:
                text = decoder.decode(chunk, final=final)
            except UnicodeDecodeError as err:
                # err.start counts from the pending bytes, which came just before this chunk.
                position = offset - pending + err.start
                raise DataFileError(
                    f"data file {str(path)!r} is not UTF-8: byte {position} (0x{err.object[err.start]:02x}) "
                    f"{err.reason}. Re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8 {path.name} > fixed{path.suffix}"
                ) from None
            content = content or bool(text.strip())
            if final:
                break
            offset += len(chunk)
    if not content:
        raise DataFileError(f"data file {str(path)!r} is empty: it holds only blank lines")


def explain_load_failure(path: Path, err: Exception) -> DataFileError:
    """The error to raise when ``datasets`` failed on ``path``: the bad line when one can be found."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        found = find_bad_json_line(path)
        if found is not None:
            return DataFileError(found)
    kind = {".jsonl": "JSON lines", ".json": "JSON", ".csv": "CSV", ".tsv": "TSV", ".parquet": "Parquet"}.get(suffix, "data")
    cause = err.__cause__ or err.__context__
    detail = f"{err}" + (f" ({type(cause).__name__}: {cause})" if cause is not None else "")
    return DataFileError(f"data file {str(path)!r} could not be read as {kind}: {detail}")


def find_bad_json_line(path: Path) -> str | None:
    """The first line of a JSON-lines file that is not a JSON object, described; None if all are."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            json.loads(text)
        except json.JSONDecodeError as err:
            return f"data file {str(path)!r} line {err.lineno} column {err.colno}: not valid JSON ({err.msg})"
        return None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            return (f"data file {str(path)!r} line {number}: not valid JSON ({err.msg} at column {err.colno}): "
                    f"{shorten(line)}; fix or remove that line")
        if not isinstance(row, dict):
            return (f"data file {str(path)!r} line {number}: a {type(row).__name__}, not a JSON object "
                    f"({{\"column\": value, ...}}): {shorten(line)}")
    return None


def shorten(line: str, width: int = 80) -> str:
    return repr(line if len(line) <= width else line[: width - 3] + "...")
