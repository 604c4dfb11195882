"""Reading user tables (CSV, TSV, JSONL, JSON array) into rows of strings, with fixable error messages.

The format comes from the file extension (.csv, .tsv/.tab, .jsonl/.ndjson, .json); without a known
extension it is sniffed: text starting with "{" is JSONL, "[" a JSON array, a tab in the first line TSV,
anything else CSV. CSV follows the usual quoting rules; TSV is read without quote handling (the GLUE
convention), so '"' inside TSV values stays literal.
"""
from __future__ import annotations

import csv
import io
import json
import os
from itertools import islice
from pathlib import Path
from typing import Any, Iterator, Union

from .base import TaskDataError

Source = Union[str, os.PathLike, bytes, bytearray]

_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}


def read_source(source: Source, max_bytes: int, filename: str | None = None) -> tuple[str, str]:
    """Return (decoded text, display name); TaskDataError when too large, empty or not UTF-8."""
    if isinstance(source, (bytes, bytearray)):
        data, name = bytes(source), filename or "uploaded data"
        if len(data) > max_bytes:
            raise _too_large(name, len(data), max_bytes)
    else:
        path = Path(source)
        name = filename or path.name
        if not path.is_file():
            raise TaskDataError(f"file {str(path)!r} does not exist; check the path")
        size = path.stat().st_size
        if size > max_bytes:
            raise _too_large(name, size, max_bytes)
        data = path.read_bytes()
    if not data.strip():
        raise TaskDataError(f"{name} is empty; upload a file with a header row and data rows")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        guess = ""
        if not data.startswith((b"\xff\xfe", b"\xfe\xff")):
            try:
                data.decode("cp1252")
                guess = ", it looks like Windows-1252/Latin-1"
            except UnicodeDecodeError:
                pass
        else:
            guess = ", it looks like UTF-16"
        raise TaskDataError(
            f"{name} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start} is invalid{guess}); "
            "save it with UTF-8 encoding (in Excel: 'CSV UTF-8') and upload again"
        ) from None
    return text, name


def _human(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def _too_large(name: str, size: int, limit: int) -> TaskDataError:
    return TaskDataError(
        f"{name} is {_human(size)} ({size} bytes), over the {_human(limit)} limit ({limit} bytes); "
        "upload a smaller sample of rows"
    )


def detect_format(text: str, name: str) -> str:
    """'csv', 'tsv', 'jsonl' or 'json' from the extension of `name`, else sniffed from `text`."""
    fmt = _EXTENSIONS.get(Path(name).suffix.lower())
    head = text.lstrip()[:1]
    if fmt == "json" and head == "{":
        return "jsonl"
    if fmt:
        return fmt
    if head == "{":
        return "jsonl"
    if head == "[":
        return "json"
    return "tsv" if "\t" in text.split("\n", 1)[0] else "csv"


def _cell(value: Any, column: str, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise TaskDataError(
        f"{where}: column {column!r} holds a {type(value).__name__}; values must be plain strings or numbers"
    )


def _json_rows(text: str, fmt: str, name: str) -> Iterator[tuple[str, dict[str, str]]]:
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise TaskDataError(f"{name} is not valid JSON ({err}); fix the syntax or save it as JSONL") from None
        if not isinstance(data, list):
            raise TaskDataError(f"{name} must be a JSON array of objects, one per row")
        items: Iterator[tuple[str, Any]] = ((f"item {i + 1}", obj) for i, obj in enumerate(data))
    else:
        items = _jsonl_items(text, name)
    for where, obj in items:
        if not isinstance(obj, dict):
            raise TaskDataError(f"{name}, {where}: expected a JSON object like {{\"text\": ..., \"label\": ...}}")
        yield where, {str(k): _cell(v, str(k), f"{name}, {where}") for k, v in obj.items()}


def _jsonl_items(text: str, name: str) -> Iterator[tuple[str, Any]]:
    # split on "\n" only: str.splitlines would also break at U+2028, which JSON strings may hold raw
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", json.loads(line)
        except json.JSONDecodeError as err:
            raise TaskDataError(
                f"{name}, line {number} is not valid JSON ({err.msg}); each line must hold one JSON object"
            ) from None


def _table_rows(text: str, fmt: str, name: str) -> tuple[list[str], Iterator[tuple[str, dict[str, str]]]]:
    delimiter = "\t" if fmt == "tsv" else ","
    quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    try:
        header = next(row for row in reader if row)
    except StopIteration:
        raise TaskDataError(f"{name} is empty; upload a file with a header row and data rows") from None
    except csv.Error as err:
        raise TaskDataError(f"{name}: cannot read the header row ({err}); check the file format") from None
    columns = [c.strip() for c in header]
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        shown = ", ".join(map(repr, dupes))
        raise TaskDataError(f"{name}: column names repeat ({shown}); give each column a unique name")

    def rows() -> Iterator[tuple[str, dict[str, str]]]:
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                raise TaskDataError(f"{name}, line {reader.line_num}: {err}; check quoting") from None
            if not any(cell.strip() for cell in row):
                continue
            where = f"line {reader.line_num}"
            if len(row) != len(columns):
                hint = "tabs inside values" if fmt == "tsv" else "unquoted commas inside values"
                raise TaskDataError(
                    f"{name}, {where}: {len(row)} values but the header has {len(columns)} columns; "
                    f"check the delimiter and {hint}"
                )
            yield where, dict(zip(columns, row))

    return columns, rows()


def iter_rows(text: str, name: str) -> tuple[list[str], Iterator[tuple[str, dict[str, str]]]]:
    """(columns, iterator of (location, row)) for decoded `text`; JSON columns come from the first row.

    `location` ("line 7") names the row in error messages. Row values are strings.
    """
    fmt = detect_format(text, name)
    if fmt in ("csv", "tsv"):
        return _table_rows(text, fmt, name)
    rows = _json_rows(text, fmt, name)
    first = next(rows, None)
    if first is None:
        raise TaskDataError(f"{name} has no rows; add one JSON object per row")

    def chained() -> Iterator[tuple[str, dict[str, str]]]:
        yield first
        yield from rows

    return list(first[1]), chained()


def preview_file(
    path: Source, n: int = 5, *, filename: str | None = None, max_bytes: int = 20_000_000
) -> tuple[list[str], list[list[str]]]:
    """Column names and the first `n` rows (values in column order) of a CSV/TSV/JSONL file or its bytes.

    For JSON formats the columns are the keys seen in those first rows. Raises TaskDataError for the same
    file problems as `load_custom` (too large, empty, not UTF-8, malformed).
    """
    text, name = read_source(path, max_bytes, filename)
    columns, rows = iter_rows(text, name)
    head = [row for _, row in islice(rows, n)]
    for row in head:
        columns.extend(k for k in row if k not in columns)
    return columns, [[row.get(c, "") for c in columns] for row in head]
