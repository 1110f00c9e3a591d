"""Reading instruction files: validate, normalize, deduplicate — and account for every row.

Every input row ends up either accepted or in the rejected list with a reason, so
`input_rows == len(accepted) + len(rejected)` always holds.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from prefgen_dagster.ids import stable_hash

SUPPORTED_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


@dataclass(frozen=True)
class RawRow:
    """One row as read from the source, before validation."""

    source_row: int
    raw: str
    record: dict[str, Any] | None
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
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n")).strip()


def dedup_key(text: str) -> str:
    """Texts that differ only in case, zero-width characters or spacing are duplicates."""
    return " ".join(text.translate(_ZERO_WIDTH).split()).casefold()


def instruction_id(instruction: str, system_prompt: str | None) -> str:
    return stable_hash(["instruction", dedup_key(instruction), system_prompt or ""])


def read_rows(path: Path) -> Iterator[RawRow]:
    """Rows of a JSONL, CSV or Parquet file, numbered from 1 (data rows, header excluded)."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        yield from _read_jsonl(path)
    elif suffix == ".csv":
        yield from _read_csv(path)
    elif suffix == ".parquet":
        for number, record in enumerate(pl.read_parquet(path).iter_rows(named=True), start=1):
            yield RawRow(number, json.dumps(record, default=str, ensure_ascii=False), record)
    else:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use {SUPPORTED_SUFFIXES}")


def _read_jsonl(path: Path) -> Iterator[RawRow]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
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
                yield RawRow(number, text, None, f"not valid JSON: {err.msg} at column {err.colno}")
                continue
            if not isinstance(value, dict):
                yield RawRow(number, text, None, f"JSON is a {type(value).__name__}, not an object")
                continue
            yield RawRow(number, text, value)


def _read_csv(path: Path) -> Iterator[RawRow]:
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    reader = csv.DictReader(io.StringIO(data.decode("utf-8", "replace"), newline=""))
    for number, record in enumerate(reader, start=1):
        yield RawRow(number, json.dumps(record, ensure_ascii=False), dict(record))


def validate_row(
    row: RawRow, instruction_field: str = "instruction"
) -> tuple[str, str | None] | str:
    """The normalized (instruction, system_prompt), or the reason the row is rejected."""
    if row.error is not None:
        return row.error
    assert row.record is not None
    if instruction_field not in row.record:
        return f"missing field {instruction_field!r}"
    instruction = row.record[instruction_field]
    if not isinstance(instruction, str):
        return f"field {instruction_field!r} is {type(instruction).__name__}, not a string"
    system_prompt = row.record.get("system_prompt")
    if system_prompt is not None and not isinstance(system_prompt, str):
        return f"field 'system_prompt' is {type(system_prompt).__name__}, not a string"
    instruction = normalize_text(instruction)
    if not instruction.translate(_ZERO_WIDTH).strip():
        return f"field {instruction_field!r} is empty"
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in instruction):
        return f"field {instruction_field!r} contains control characters"
    system_prompt = normalize_text(system_prompt) if system_prompt else None
    return instruction, system_prompt or None


def ingest(rows: Iterator[RawRow], source: str, batch_id: str) -> IngestResult:
    """Split rows into accepted instructions and rejected rows (first occurrence wins)."""
    result = IngestResult()
    first_seen: dict[str, int] = {}
    for row in rows:
        outcome = validate_row(row)
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
    return result


def _rejected(row: RawRow, reason: str, source: str, batch_id: str) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        "source": source,
        "source_row": row.source_row,
        "raw": row.raw,
        "reason": reason,
    }
