"""Strict parsing of judge output: a well-formed answer or a named failure, never a guess.

Structured output (JSON) is tried first. The text fallback accepts only an answer that is
exactly `count` blocks of the form

    Rating: 4
    Rationale: one or two sentences

and nothing before the first block, so a preamble or a missing block cannot shift ratings
onto the wrong responses.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_TEXT_BLOCK = re.compile(
    r"Rating:[ \t]*(?P<rating>\S+)[ \t]*\n+Rationale:[ \t]*(?P<rationale>.*?)"
    r"(?=\n+Rating:|\Z)",
    re.DOTALL,
)


@dataclass(frozen=True)
class JudgeVerdict:
    """Ratings in the order the responses were shown, or all None with a failure status."""

    ratings: list[int | None]
    rationales: list[str | None]
    status: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def failed(count: int, status: str) -> JudgeVerdict:
    return JudgeVerdict([None] * count, [None] * count, status)


def parse_judge_output(text: str | None, count: int) -> JudgeVerdict:
    if text is None or not text.strip():
        return failed(count, "empty")
    stripped = text.strip()
    if stripped.startswith("{"):
        return _parse_json(stripped, count)
    return _parse_text(stripped, count)


def _parse_json(text: str, count: int) -> JudgeVerdict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        # Cut off by max_tokens: the error sits at the very end, or in a string left open.
        cut_off = err.pos >= len(text) - 1 or err.msg.startswith("Unterminated string")
        status = "truncated_json" if cut_off else "invalid_json"
        return failed(count, status)
    entries = value.get("ratings") if isinstance(value, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return failed(count, "invalid_json")
    if len(entries) != count:
        return failed(count, "wrong_count")
    return _validated([e.get("rating") for e in entries], [e.get("rationale") for e in entries])


def _parse_text(text: str, count: int) -> JudgeVerdict:
    if not text.startswith("Rating:"):
        return failed(count, "unparseable")
    blocks = list(_TEXT_BLOCK.finditer(text))
    covered = "".join(match.group(0) for match in blocks)
    if not blocks or len(covered.replace("\n", "")) != len(text.replace("\n", "")):
        return failed(count, "unparseable")
    if len(blocks) != count:
        return failed(count, "wrong_count")
    ratings: list[object] = []
    for block in blocks:
        raw = block.group("rating")
        ratings.append(int(raw) if re.fullmatch(r"[0-9]+", raw) else raw)
    return _validated(ratings, [block.group("rationale").strip() for block in blocks])


def _validated(ratings: list[object], rationales: list[object]) -> JudgeVerdict:
    count = len(ratings)
    for rating in ratings:
        if isinstance(rating, bool) or not isinstance(rating, int):
            return failed(count, "not_integer")
        if not 1 <= rating <= 5:
            return failed(count, "out_of_range")
    if not all(isinstance(r, str) for r in rationales):
        return failed(count, "invalid_json")
    return JudgeVerdict(list(ratings), list(rationales), "ok")  # type: ignore[arg-type]
