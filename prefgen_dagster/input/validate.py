"""Validating instruction rows: normalize, deduplicate (within the file, and against earlier
batches when given their instruction ids), check the context — and account for every row.

Every input row ends up either accepted or in the rejected list with a reason, so
`input_rows == len(accepted) + len(rejected)` always holds. Besides the accepted and rejected
rows, ingest keeps one id per distinct instruction and a chunk of rows waiting for the
context check.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from prefgen_dagster.ids import stable_hash
from prefgen_dagster.input.read import LONE_SURROGATE, RawRow
from prefgen_dagster.text.conversation import BadConversation, Turn, split_conversation

# Characters that show nothing: zero-width spaces, joiners, bidi controls, the BOM... (every
# code point of Unicode category Cf). A text of only these (and spaces) is blank.
_INVISIBLE = dict.fromkeys(
    code for code in range(sys.maxunicode + 1) if unicodedata.category(chr(code)) == "Cf"
)
# Control characters (Unicode category Cc) other than tab and line feed; carriage returns are
# turned into line feeds before this is checked.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
CONTEXT_CHECK_CHUNK = 2048
# How the reason of a row skipped as already ingested by an earlier batch starts (the summary
# counts these rows by it).
SEEN_BEFORE = "seen before"

# Given (prompt text, system prompt) pairs (a conversation's turns joined into one text), the
# reason each one is rejected, or None.
PromptCheck = Callable[[Sequence[tuple[str, str | None]]], list[str | None]]


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
    """Texts that differ only in case, invisible characters or spacing are duplicates."""
    return " ".join(text.translate(_INVISIBLE).split()).casefold()


def instruction_id(
    instruction: str, system_prompt: str | None, history: Sequence[Turn] = ()
) -> str:
    """The same for texts with the same `dedup_key` and system prompt, in any batch; for a
    conversation, with the same earlier turns too (the whole conversation is the prompt)."""
    earlier = [[turn["role"], dedup_key(turn["content"])] for turn in history]
    return stable_hash(["instruction", dedup_key(instruction), system_prompt or "", *earlier])


def seen_before_reason(batch_id: str, source_row: int) -> str:
    """Why a row is skipped: an earlier batch (same pipeline settings) has its instruction,
    so answering it again would export it twice. The text starts with `SEEN_BEFORE`."""
    return f"{SEEN_BEFORE}: batch {batch_id} row {source_row}"


# A row's prompt, normalized: (instruction, system prompt, the conversation's earlier turns).
Prompt = tuple[str, str | None, list[Turn]]


def validate_row(
    row: RawRow,
    instruction_field: str = "instruction",
    system_prompt_field: str = "system_prompt",
    conversation_fields: Sequence[str] = (),
) -> Prompt | str:
    """The row's normalized prompt, or the reason the row is rejected. A row without the
    instruction field but with one of `conversation_fields` is a conversation
    (`text.conversation`)."""
    if row.error is not None:
        return row.error
    assert row.record is not None
    single = instruction_field in row.record
    field = next((name for name in conversation_fields if name in row.record), None)
    if not single and field is None:
        wanted = " or ".join(repr(name) for name in (instruction_field, *conversation_fields))
        return f"missing field {wanted}; the row has {_field_names(row.record)}"
    try:
        system_prompt = _text_field(row.record, system_prompt_field, required=False)
        if single:
            instruction = _text_field(row.record, instruction_field, required=True)
            history: list[Turn] = []
        else:
            assert field is not None
            instruction, system_prompt, history = _conversation(row.record, field, system_prompt)
    except (_Rejected, BadConversation) as err:
        return str(err)
    assert instruction is not None
    if not _shows_something(instruction):
        what = "is empty" if single else "has an empty last user message"
        return f"field {instruction_field if single else field!r} {what}"
    if system_prompt is not None and not _shows_something(system_prompt):
        system_prompt = None
    return instruction, system_prompt, history


def _shows_something(text: str) -> bool:
    return bool(text.translate(_INVISIBLE).strip())


def _conversation(record: Mapping[str, Any], field: str, system_prompt: str | None) -> Prompt:
    """A message list as (its last user turn, its system message or the row's system
    prompt, the turns between), each text normalized and checked like a field's."""
    instruction, system, history = split_conversation(record[field], field)
    checked = [
        {"role": turn["role"], "content": _checked(turn["content"], f"{field} message {i + 1}")}
        for i, turn in enumerate(history)
    ]
    if any(not _shows_something(turn["content"]) for turn in checked):
        raise _Rejected(f"field {field!r} has an empty message")
    own = _checked(system, f"{field} system message") if system is not None else None
    return _checked(instruction, field), own or system_prompt, checked


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
    return _checked(value, name)


def _checked(value: str, name: str) -> str:
    """A text normalized, or `_Rejected` naming the field for a character it may not hold."""
    if match := LONE_SURROGATE.search(value):
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
    conversation_fields: Sequence[str] = (),
    fits_context: PromptCheck | None = None,
    seen_before: Mapping[str, tuple[str, int]] | None = None,
) -> IngestResult:
    """Split rows into accepted instructions and rejected rows (first occurrence wins).

    `fits_context` (see `input.context`) gets the distinct valid prompts a chunk at a time, so
    a tokenizer counts many texts per call; a prompt it objects to is rejected with its reason.
    `seen_before` maps instruction ids already ingested by earlier batches to (batch, row):
    those rows are rejected as `seen before: ...` (see `seen_before_reason`).
    Rejected rows come back in source order."""
    result = IngestResult()
    fields = (instruction_field, system_prompt_field, *conversation_fields)
    first_seen: dict[str, int] = {}
    pending: list[tuple[RawRow, str, Prompt]] = []
    for row in rows:
        outcome = validate_row(row, instruction_field, system_prompt_field, conversation_fields)
        if isinstance(outcome, str):
            result.rejected.append(_rejected(row, outcome, source, batch_id))
            continue
        iid = instruction_id(*outcome)
        if iid in first_seen:
            reason = f"duplicate of row {first_seen[iid]}"
            result.rejected.append(_rejected(row, reason, source, batch_id))
            continue
        first_seen[iid] = row.source_row
        if seen_before and iid in seen_before:
            reason = seen_before_reason(*seen_before[iid])
            result.rejected.append(_rejected(row, reason, source, batch_id))
            continue
        pending.append((row, iid, outcome))
        if len(pending) == CONTEXT_CHECK_CHUNK:
            _settle(pending, fits_context, source, batch_id, result, fields)
            pending = []
    _settle(pending, fits_context, source, batch_id, result, fields)
    result.rejected.sort(key=lambda rejected: rejected["source_row"])
    return result


def _settle(
    pending: list[tuple[RawRow, str, Prompt]],
    fits_context: PromptCheck | None,
    source: str,
    batch_id: str,
    result: IngestResult,
    fields: tuple[str, ...],
) -> None:
    """Accept the pending rows, or reject those whose prompt does not fit the context (a
    conversation's turns counted together)."""
    prompts = [
        ("\n".join([*(turn["content"] for turn in history), instruction]), system_prompt)
        for _, _, (instruction, system_prompt, history) in pending
    ]
    reasons = fits_context(prompts) if fits_context and prompts else [None] * len(pending)
    for (row, iid, prompt), reason in zip(pending, reasons, strict=True):
        instruction, system_prompt, history = prompt
        if reason is not None:
            result.rejected.append(_rejected(row, reason, source, batch_id))
            continue
        result.accepted.append(
            {
                "batch_id": batch_id,
                "instruction_id": iid,
                "instruction": instruction,
                "system_prompt": system_prompt,
                "history": json.dumps(history, ensure_ascii=False) if history else None,
                "source": source,
                "source_row": row.source_row,
                "input_fields": input_fields(row, fields),
            }
        )


def input_fields(row: RawRow, used: tuple[str, ...]) -> str | None:
    """The row's other fields (an `id`, a `category`, ...) as a JSON object, carried to the
    export as they came; None when the row has none. Values JSON cannot hold (a Parquet
    date) are written as text."""
    assert row.record is not None
    extra = {name: value for name, value in row.record.items() if name not in used}
    return json.dumps(extra, ensure_ascii=False, sort_keys=True, default=str) if extra else None


def _rejected(row: RawRow, reason: str, source: str, batch_id: str) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        "source": source,
        "source_row": row.source_row,
        "raw": row.raw,
        "reason": reason,
    }
