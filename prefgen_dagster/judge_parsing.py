"""Strict parsing of judge output: a well-formed answer or a named failure, never a guess.

Structured output (JSON) is tried first. The text fallback accepts only an answer that is
exactly `count` blocks of the form

    Rating: 4
    Rationale: one or two sentences

(just `Rating: 4` lines in score-only mode) and nothing before the first block, so a preamble
or a missing block cannot shift ratings onto the wrong responses. "N/A" is accepted only
where the aspect allows it, and is stored as no rating with `not_applicable` set.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from prefgen_dagster.prompts.ultrafeedback import NOT_APPLICABLE

_TEXT_BLOCK = re.compile(
    r"Rating:[ \t]*(?P<rating>[^\n]*?)[ \t]*\n+Rationale:[ \t]*(?P<rationale>.*?)"
    r"(?=\n+Rating:|\Z)",
    re.DOTALL,
)
_SCORE_LINE = re.compile(r"Rating:[ \t]*(?P<rating>[^\n]*?)[ \t]*(?:\n+|\Z)")


@dataclass(frozen=True)
class JudgeVerdict:
    """Ratings in the order the responses were shown, or all None with a failure status."""

    ratings: list[int | None]
    rationales: list[str | None]
    status: str
    not_applicable: list[bool] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def is_na(self, index: int) -> bool:
        return bool(self.not_applicable and self.not_applicable[index])


def failed(count: int, status: str) -> JudgeVerdict:
    return JudgeVerdict([None] * count, [None] * count, status)


def parse_judge_output(
    text: str | None, count: int, allow_na: bool = False, with_rationale: bool = True
) -> JudgeVerdict:
    if text is None or not text.strip():
        return failed(count, "empty")
    stripped = text.strip()
    if stripped.startswith("{"):
        return _parse_json(stripped, count, allow_na, with_rationale)
    return _parse_text(stripped, count, allow_na, with_rationale)


def _parse_json(text: str, count: int, allow_na: bool, with_rationale: bool) -> JudgeVerdict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        # Cut off by max_tokens: the error sits at the very end, or in a string left open.
        cut_off = err.pos >= len(text) - 1 or err.msg.startswith("Unterminated string")
        return failed(count, "truncated_json" if cut_off else "invalid_json")
    entries = value.get("ratings") if isinstance(value, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return failed(count, "invalid_json")
    if len(entries) != count:
        return failed(count, "wrong_count")
    rationales = [e.get("rationale") for e in entries] if with_rationale else [None] * count
    return _validated([e.get("rating") for e in entries], rationales, allow_na, with_rationale)


def _parse_text(text: str, count: int, allow_na: bool, with_rationale: bool) -> JudgeVerdict:
    if not text.startswith("Rating:"):
        return failed(count, "unparseable")
    pattern = _TEXT_BLOCK if with_rationale else _SCORE_LINE
    blocks = list(pattern.finditer(text))
    covered = "".join(match.group(0) for match in blocks)
    if not blocks or len(covered.replace("\n", "")) != len(text.replace("\n", "")):
        return failed(count, "unparseable")
    if len(blocks) != count:
        return failed(count, "wrong_count")
    ratings: list[object] = []
    for block in blocks:
        raw = block.group("rating")
        ratings.append(int(raw) if re.fullmatch(r"[0-9]+", raw) else raw)
    rationales: list[object] = (
        [block.group("rationale").strip() for block in blocks] if with_rationale else [None] * count
    )
    return _validated(ratings, rationales, allow_na, with_rationale)


def _validated(
    ratings: list[object], rationales: list[object], allow_na: bool, with_rationale: bool
) -> JudgeVerdict:
    count = len(ratings)
    not_applicable = [allow_na and rating == NOT_APPLICABLE for rating in ratings]
    for rating, na in zip(ratings, not_applicable, strict=True):
        if na:
            continue
        if rating == NOT_APPLICABLE:
            return failed(count, "na_not_allowed")
        if isinstance(rating, bool) or not isinstance(rating, int):
            return failed(count, "not_integer")
        if not 1 <= rating <= 5:
            return failed(count, "out_of_range")
    if with_rationale and not all(isinstance(r, str) for r in rationales):
        return failed(count, "invalid_json")
    numbers = [None if na else rating for rating, na in zip(ratings, not_applicable, strict=True)]
    return JudgeVerdict(numbers, list(rationales), "ok", not_applicable)  # type: ignore[arg-type]
