"""Reading instruction files: validate, normalize, deduplicate — and account for every row.

Every input row ends up either accepted or in the rejected list with a reason, so
`input_rows == len(accepted) + len(rejected)` always holds. Files are streamed (JSONL line by
line, CSV record by record, Parquet batch by batch); besides the accepted and rejected rows,
ingest keeps one id per distinct instruction and a chunk of rows waiting for the context check.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from prefgen_dagster.ids import stable_hash

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))
# Control characters (Unicode category Cc) other than tab and line feed; carriage returns are
# turned into line feeds before this is checked.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# A lone surrogate comes from a JSON escape such as "\ud800" or, for CSV, from an undecodable
# byte; it is not valid Unicode and cannot be stored as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")
CONTEXT_CHECK_CHUNK = 2048
PARQUET_BATCH_ROWS = 1024

# Given (instruction, system prompt) pairs, the reason each one is rejected, or None.
PromptCheck = Callable[[Sequence[tuple[str, str | None]]], list[str | None]]


@dataclass(frozen=True)
class RawRow:
    """One row as read from the source, before validation."""

    source_row: int
    raw: str
    record: Mapping[str, Any] | None
    error: str | None = None


@dataclass
class IngestResult:
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def input_rows(self) -> int:
        return len(self.accepted) + len(self.rejected)


def normalize_text(text: str) -> str:
    """Unicode NFC, LF line ends, no surrounding whitespace; inner layout is kept."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", text).strip()


def dedup_key(text: str) -> str:
    """Texts that differ only in case, zero-width characters or spacing are duplicates."""
    return " ".join(text.translate(_ZERO_WIDTH).split()).casefold()


def instruction_id(instruction: str, system_prompt: str | None) -> str:
    return stable_hash(["instruction", dedup_key(instruction), system_prompt or ""])


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
    bad = next((i for i, value in enumerate(values) if _SURROGATE.search(value)), None)
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


def validate_row(
    row: RawRow,
    instruction_field: str = "instruction",
    system_prompt_field: str = "system_prompt",
) -> tuple[str, str | None] | str:
    """The normalized (instruction, system_prompt), or the reason the row is rejected."""
    if row.error is not None:
        return row.error
    assert row.record is not None
    if instruction_field not in row.record:
        return f"missing field {instruction_field!r}; the row has {_field_names(row.record)}"
    try:
        instruction = _text_field(row.record, instruction_field, required=True)
        system_prompt = _text_field(row.record, system_prompt_field, required=False)
    except _Rejected as err:
        return str(err)
    assert instruction is not None
    if not instruction.translate(_ZERO_WIDTH).strip():
        return f"field {instruction_field!r} is empty"
    if system_prompt is not None and not system_prompt.translate(_ZERO_WIDTH).strip():
        system_prompt = None
    return instruction, system_prompt


class _Rejected(ValueError):
    """Why a field makes its row unusable."""


def _text_field(record: Mapping[str, Any], name: str, required: bool) -> str | None:
    """The field's text, normalized; None when it is absent or null and not required."""
    value = record.get(name)
    if value is None:
        if required:
            raise _Rejected(f"field {name!r} is null")
        return None
    if not isinstance(value, str):
        raise _Rejected(f"field {name!r} is {type(value).__name__}, not a string")
    if match := _SURROGATE.search(value):
        raise _Rejected(f"field {name!r} contains an unpaired surrogate U+{ord(match[0]):04X}")
    value = normalize_text(value)
    if match := _CONTROL.search(value):
        raise _Rejected(f"field {name!r} contains control character U+{ord(match[0]):04X}")
    return value


def _field_names(record: Mapping[str, Any], shown: int = 8) -> str:
    if not record:
        return "no fields"
    names = ", ".join(repr(name) for name in islice(record, shown))
    return names + (f" and {len(record) - shown} more" if len(record) > shown else "")


def ingest(
    rows: Iterable[RawRow],
    source: str,
    batch_id: str,
    *,
    instruction_field: str = "instruction",
    system_prompt_field: str = "system_prompt",
    fits_context: PromptCheck | None = None,
) -> IngestResult:
    """Split rows into accepted instructions and rejected rows (first occurrence wins).

    `fits_context` (see `context_limits`) gets the distinct valid prompts a chunk at a time, so
    a tokenizer counts many texts per call; a prompt it objects to is rejected with its reason.
    Rejected rows come back in source order."""
    result = IngestResult()
    first_seen: dict[str, int] = {}
    pending: list[tuple[RawRow, str, str, str | None]] = []
    for row in rows:
        outcome = validate_row(row, instruction_field, system_prompt_field)
        if isinstance(outcome, str):
            result.rejected.append(_rejected(row, outcome, source, batch_id))
            continue
        instruction, system_prompt = outcome
        iid = instruction_id(instruction, system_prompt)
        if iid in first_seen:
            reason = f"duplicate of row {first_seen[iid]}"
            result.rejected.append(_rejected(row, reason, source, batch_id))
            continue
        first_seen[iid] = row.source_row
        pending.append((row, iid, instruction, system_prompt))
        if len(pending) == CONTEXT_CHECK_CHUNK:
            _settle(pending, fits_context, source, batch_id, result)
            pending = []
    _settle(pending, fits_context, source, batch_id, result)
    result.rejected.sort(key=lambda rejected: rejected["source_row"])
    return result


def _settle(
    pending: list[tuple[RawRow, str, str, str | None]],
    fits_context: PromptCheck | None,
    source: str,
    batch_id: str,
    result: IngestResult,
) -> None:
    """Accept the pending rows, or reject those whose prompt does not fit the context."""
    prompts = [(instruction, system_prompt) for _, _, instruction, system_prompt in pending]
    reasons = fits_context(prompts) if fits_context and prompts else [None] * len(pending)
    for (row, iid, instruction, system_prompt), reason in zip(pending, reasons, strict=True):
        if reason is not None:
            result.rejected.append(_rejected(row, reason, source, batch_id))
            continue
        result.accepted.append(
            {
                "batch_id": batch_id,
                "instruction_id": iid,
                "instruction": instruction,
                "system_prompt": system_prompt,
                "source": source,
                "source_row": row.source_row,
            }
        )


def _rejected(row: RawRow, reason: str, source: str, batch_id: str) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        "source": source,
        "source_row": row.source_row,
        "raw": row.raw,
        "reason": reason,
    }
