"""Unreadable local data files name the file and the line or byte (issue 16)."""

from __future__ import annotations

import json

import pytest

from textdml.data.file_checks import DataFileError, check_text_file
from textdml.data.loading import load_data


def write_rows(path, rows: int = 40) -> list[str]:
    lines = [json.dumps({"anchor": f"question {i}", "positive": f"answer {i}"}) for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return lines


def test_a_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    lines = write_rows(path)
    lines[36] = '{"anchor": "cut", "positive": '
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFileError, match=r"pairs.jsonl' line 37: not valid JSON"):
        load_data(str(path))


def test_a_line_that_is_not_an_object_is_named(tmp_path):
    path = tmp_path / "pairs.jsonl"
    lines = write_rows(path, 5)
    path.write_text("\n".join(lines[:3] + ['["a", "b"]'] + lines[3:]) + "\n")
    with pytest.raises(DataFileError, match=r"line 4: a list, not a JSON object"):
        load_data(str(path))


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_non_utf8_file_names_the_byte_offset(tmp_path, suffix):
    path = tmp_path / f"latin{suffix}"
    head = b'{"anchor": "ok", "positive": "fine"}\n' if suffix == ".jsonl" else b"anchor,positive\nok,fine\n"
    path.write_bytes(head + b"caf\xe9 au lait")
    with pytest.raises(DataFileError, match=rf"is not UTF-8: byte {len(head) + 3} \(0xe9\)"):
        load_data(str(path))


def test_the_byte_offset_is_exact_across_chunks(tmp_path, monkeypatch):
    import textdml.data.file_checks as checks

    monkeypatch.setattr(checks, "CHUNK", 4)
    path = tmp_path / "x.jsonl"
    path.write_bytes("ab\u00e9cd".encode() + b"\xff")  # a 2-byte character split across chunks, then a bad byte
    with pytest.raises(DataFileError, match=r"byte 6 \(0xff\)"):
        check_text_file(path)


def test_a_file_of_blank_lines_is_empty(tmp_path):
    path = tmp_path / "blank.jsonl"
    path.write_text("\n\n   \n\n")
    with pytest.raises(DataFileError, match="is empty: it holds only blank lines"):
        load_data(str(path))


def test_a_good_file_loads(tmp_path):
    path = tmp_path / "pairs.jsonl"
    write_rows(path, 6)
    assert len(load_data(str(path))) == 6
