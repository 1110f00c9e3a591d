"""Reading instruction files row by row (JSONL line by line, CSV record by record, Parquet
batch by batch): every row comes out as a `RawRow`, parsed or with the reason it is not."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
# A lone surrogate comes from a JSON escape such as "\ud800" or, for CSV, from an undecodable
# byte; it is not valid Unicode and cannot be stored as UTF-8.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
PARQUET_BATCH_ROWS = 1024


@dataclass(frozen=True)
class RawRow:
    """One row as read from the source, before validation."""

    source_row: int
    raw: str
    record: Mapping[str, Any] | None
    error: str | None = None


def read_rows(path: Path) -> Iterator[RawRow]:
    """Rows of a JSONL, CSV or Parquet file, numbered from 1 (data rows, header excluded).

    CSV rows are numbered by record, not by line, since a quoted value may span lines."""
    readers = {
        ".jsonl": _read_jsonl,
        ".json": _read_jsonl,
        ".csv": _read_csv,
        ".parquet": _read_parquet,
    }
    suffix = path.suffix.lower()
    if suffix not in readers:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use {SUPPORTED_SUFFIXES}")
    if path.stat().st_size == 0:  # an empty file is an empty batch, whatever its type
        return
    yield from readers[suffix](path)


def _read_jsonl(path: Path) -> Iterator[RawRow]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
                if not line:  # the file is a BOM and nothing else
                    return
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as err:
                yield RawRow(number, line.decode("utf-8", "replace"), None, f"invalid UTF-8: {err}")
                continue
            text = text.rstrip("\r\n")
            if not text.strip():
                yield RawRow(number, text, None, "blank line")
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as err:
                # Some messages end in "at" already ("Unterminated string starting at").
                problem = err.msg.removesuffix(" at")
                yield RawRow(number, text, None, f"not valid JSON: {problem} at column {err.colno}")
                continue
            except RecursionError:
                yield RawRow(number, text, None, "unreadable JSON: nested too deeply")
                continue
            except ValueError as err:  # e.g. an integer longer than Python will convert
                yield RawRow(number, text, None, f"unreadable JSON: {err}")
                continue
            if not isinstance(value, dict):
                yield RawRow(number, text, None, f"a JSON {_json_kind(value)}, not an object")
                continue
            yield RawRow(number, text, value)


def _json_kind(value: Any) -> str:
    """The JSON name of a parsed value that is not an object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else "array"


def _read_csv(path: Path) -> Iterator[RawRow]:
    # surrogateescape keeps an undecodable byte as a lone surrogate, so the row holding it
    # is rejected instead of the whole file failing or the byte being replaced silently.
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        reader = csv.reader(handle, strict=True)
        header = next(reader, None)
        if header is None:
            return
        number = 0
        while True:
            number += 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as err:  # e.g. a value over the csv module's size limit
                yield RawRow(number, "", None, f"not valid CSV: {err}")
                continue
            yield _csv_row(number, header, values)


def _csv_row(number: int, header: list[str], values: list[str]) -> RawRow:
    if not values:
        return RawRow(number, "", None, "blank line")
    record = dict(zip(header, values, strict=False))
    raw = json.dumps(record if len(values) == len(header) else values, ensure_ascii=False)
    bad = next((i for i, value in enumerate(values) if LONE_SURROGATE.search(value)), None)
    if bad is not None:
        shown = raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        column = f" ({header[bad]!r})" if bad < len(header) else ""
        return RawRow(number, shown, None, f"invalid UTF-8 in column {bad + 1}{column}")
    if len(values) != len(header):
        has, expected = _count(len(values), "value"), _count(len(header), "column")
        reason = f"the row has {has}, the header {expected}"
        return RawRow(number, raw, None, reason)
    return RawRow(number, raw, record)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _read_parquet(path: Path) -> Iterator[RawRow]:
    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH_ROWS):
        for record in batch.to_pylist():
            number += 1
            yield RawRow(number, json.dumps(record, default=str, ensure_ascii=False), record)
