"""Reading instruction files row by row (JSONL line by line, a JSON array element by element,
CSV record by record, Parquet batch by batch): every row comes out as a `RawRow`, parsed or
with the reason it is not. Text files are UTF-8; a UTF-16 file (told by its byte-order mark)
is decoded as such."""

from __future__ import annotations

import csv
import errno
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
# A lone surrogate comes from a JSON escape such as "\ud800" or, for CSV, from an undecodable
# byte; it is not valid Unicode and cannot be stored as UTF-8.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
PARQUET_BATCH_ROWS = 1024
# The csv module refuses fields over 131,072 characters and then reads on from the middle of
# the record (a phantom row); an instruction that long is the context check's to refuse.
CSV_FIELD_LIMIT = 2**31 - 1
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class InputFileError(ValueError):
    """A whole file that cannot be read as instructions (not one bad row); the message is one
    line that starts with the file's path."""


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
        ".json": _read_json,
        ".csv": _read_csv,
        ".parquet": _read_parquet,
    }
    check_input_file(path)
    if path.stat().st_size == 0:  # an empty file is an empty batch, whatever its type
        return
    yield from readers[path.suffix.lower()](path)


def check_input_file(path: Path) -> None:
    """Raise `InputFileError` unless `path` is an existing file of a supported type. A path
    the system refuses to look up (a name over 255 bytes, a path over 4096) gets the reason
    and its errno name (ENAMETOOLONG); a very long path is shown cut in the middle."""
    shown, suffix = _shortened(str(path)), path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        kind = f"file type {suffix!r}" if suffix else "file without a type suffix"
        raise InputFileError(f"{shown}: unsupported {kind}; use {', '.join(SUPPORTED_SUFFIXES)}")
    try:
        problem = None if path.is_file() else "not a file" if path.exists() else "no such file"
    except OSError as err:
        problem = f"{err.strerror} ({errno.errorcode.get(err.errno or 0, err.errno)})"
    if problem:
        raise InputFileError(f"{shown}: {problem}")


def _shortened(text: str, width: int = 200) -> str:
    """`text` cut in the middle to at most `width` characters (both ends stay readable)."""
    if len(text) <= width:
        return text
    half = (width - 1) // 2
    return f"{text[:half]}…{text[-half:]}"


def _is_utf16(path: Path) -> bool:
    return _head(path)[:2] in _UTF16_BOMS


def _lines(path: Path) -> Iterator[bytes]:
    """The file's lines as UTF-8 bytes (a UTF-16 file is decoded first)."""
    if _is_utf16(path):
        with path.open(encoding="utf-16", errors="surrogateescape", newline="") as handle:
            try:
                for line in handle:
                    yield line.encode("utf-8", "surrogatepass")
            except UnicodeDecodeError as err:  # e.g. an odd number of bytes at the end
                raise InputFileError(
                    f"{path}: not valid UTF-16 (it starts with its BOM): {err}"
                ) from err
        return
    with path.open("rb") as handle:
        yield from handle


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(4096)


def _decode(data: bytes, strict: bool = False) -> str:
    """UTF-16 when the bytes start with its byte-order mark, else UTF-8 (a BOM dropped)."""
    errors = "strict" if strict else "ignore"
    return data.decode("utf-16" if data[:2] in _UTF16_BOMS else "utf-8-sig", errors)


def _read_json(path: Path) -> Iterator[RawRow]:
    """A `.json` file: one array of objects (rows numbered by element), or JSON lines (read
    line by line, as a `.jsonl` file)."""
    if not _decode(_head(path)).lstrip().startswith("["):
        yield from _read_jsonl(path)
        return
    try:
        values = json.loads(_decode(path.read_bytes(), strict=True))
    except (UnicodeDecodeError, RecursionError, ValueError):
        values = None  # not one readable array: each line gets its own reason
    if not isinstance(values, list):
        yield from _read_jsonl(path)
        return
    for number, value in enumerate(values, start=1):
        raw = json.dumps(value, ensure_ascii=False)
        if isinstance(value, dict):
            yield RawRow(number, raw, value)
        else:
            reason = f"array element: a JSON {_json_kind(value)}, not an object"
            yield RawRow(number, raw, None, reason)


def _read_jsonl(path: Path) -> Iterator[RawRow]:
    for number, line in enumerate(_lines(path), start=1):
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
    csv.field_size_limit(CSV_FIELD_LIMIT)
    encoding = "utf-16" if _is_utf16(path) else "utf-8-sig"
    with path.open(encoding=encoding, errors="surrogateescape", newline="") as handle:
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
            except csv.Error as err:  # e.g. an unterminated quote at the end
                yield RawRow(number, "", None, f"not valid CSV: {err}")
                continue
            except UnicodeDecodeError as err:  # UTF-16 only: UTF-8 errors are escaped
                raise InputFileError(
                    f"{path}: not valid UTF-16 (it starts with its BOM): {err}"
                ) from err
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
    try:
        parquet = pq.ParquetFile(path)
    except pa.ArrowException as err:  # not Parquet at all, or cut short
        raise InputFileError(f"{path}: not a readable Parquet file: {err}") from err
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        for record in batch.to_pylist():
            number += 1
            yield RawRow(number, json.dumps(record, default=str, ensure_ascii=False), record)
