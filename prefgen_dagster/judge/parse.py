"""Strict parsing of judge output: a well-formed answer or a named failure, never a guess.

Structured output (JSON) is tried first. The text fallback accepts only an answer that is
exactly `count` blocks of the form

    Rating: 4
    Rationale: one or two sentences

(just `Rating: 4` lines in score-only mode; `Better: A` instead of `Rating:` for a pairwise
answer) and nothing before the first block, so a preamble or a missing block cannot shift
ratings onto the wrong responses. "N/A" is accepted only where the aspect allows it, and is
stored as no rating with `not_applicable` set.

A pairwise verdict is stored as ratings of its two responses, 5 for the better one and 1 for
the other (3 and 3 for a tie): a completion's mean over its comparisons is then 1 + 4 x its
share of wins, on the same 1-5 scale as the other modes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from prefgen_dagster.judge.prompt import NOT_APPLICABLE, PAIRWISE_VERDICTS

_TEXT_BLOCK = re.compile(
    r"Rating:[ \t]*(?P<rating>[^\n]*?)[ \t]*\n+Rationale:[ \t]*(?P<rationale>.*?)"
    r"(?=\n+Rating:|\Z)",
    re.DOTALL,
)
_SCORE_LINE = re.compile(r"Rating:[ \t]*(?P<rating>[^\n]*?)[ \t]*(?:\n+|\Z)")
# A pairwise verdict's ratings of (A, B).
VERDICT_RATINGS: dict[str, tuple[int, int]] = {"A": (5, 1), "B": (1, 5), "tie": (3, 3)}


@dataclass(frozen=True)
class JudgeVerdict:
    """Ratings in the order the responses were shown, or all None with a failure status."""

    ratings: list[int | None]
    rationales: list[str | None]
    status: str
    not_applicable: list[bool] | None = None
    # A reward model's raw scores (its ratings come from them, per batch: `judge/reward.py`).
    scores: list[float] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def is_na(self, index: int) -> bool:
        return bool(self.not_applicable and self.not_applicable[index])


def parse_reward_output(text: str | None) -> JudgeVerdict:
    """A reward model's answer: its score as a number (what `engines/vllm_offline` writes)."""
    try:
        score = float(text or "")
    except ValueError:
        return failed(1, "not_a_score")
    if score != score or score in (float("inf"), float("-inf")):
        return failed(1, "not_a_score")
    return JudgeVerdict([None], [None], "ok", scores=[score])


# The status of ratings whose request failed after the engine's retries (nothing to parse).
REQUEST_FAILED = "request_failed"


def failed(count: int, status: str) -> JudgeVerdict:
    return JudgeVerdict([None] * count, [None] * count, status)


def parse_listwise_output(
    text: str | None, count: int, allow_na: bool = False, with_rationale: bool = True
) -> JudgeVerdict:
    """A listwise answer: `{"ratings": [...]}` with exactly `count` entries."""
    if text is None or not text.strip():
        return failed(count, "empty")
    stripped = text.strip()
    if stripped.startswith("{"):
        return _parse_json(stripped, count, allow_na, with_rationale)
    return _parse_text(stripped, count, allow_na, with_rationale)


def parse_pointwise_output(
    text: str | None, allow_na: bool = False, with_rationale: bool = True
) -> JudgeVerdict:
    """A pointwise answer: one `{"rating": ..., "rationale": ...}` object."""
    if text is None or not text.strip():
        return failed(1, "empty")
    stripped = text.strip()
    if not stripped.startswith("{"):
        return _parse_text(stripped, 1, allow_na, with_rationale)
    value = _load_json(stripped)
    if isinstance(value, JudgeVerdict):
        return failed(1, value.status)
    if not isinstance(value, dict):
        return failed(1, "invalid_json")
    return _validated([value.get("rating")], [value.get("rationale")], allow_na, with_rationale)


def parse_pairwise_output(text: str | None, with_rationale: bool = True) -> JudgeVerdict:
    """A pairwise answer: `{"better": "A" | "B" | "tie", ...}`, or the text form
    `Better: A` (+ `Rationale: ...`), as ratings of (A, B)."""
    if text is None or not text.strip():
        return failed(2, "empty")
    stripped = text.strip()
    if stripped.startswith("{"):
        value = _load_json(stripped)
        if isinstance(value, JudgeVerdict):
            return failed(2, value.status)
        if not isinstance(value, dict):
            return failed(2, "invalid_json")
        verdict, rationale = value.get("better"), value.get("rationale")
    else:
        match = _PAIRWISE_TEXT.fullmatch(stripped)
        if match is None or (with_rationale and match.group("rationale") is None):
            return failed(2, "unparseable")
        verdict, rationale = match.group("verdict"), match.group("rationale")
    if verdict not in PAIRWISE_VERDICTS:
        return failed(2, "unknown_verdict")
    if with_rationale and not isinstance(rationale, str):
        return failed(2, "invalid_json")
    rationales = [rationale.strip(), rationale.strip()] if with_rationale else [None, None]
    return JudgeVerdict(list(VERDICT_RATINGS[verdict]), rationales, "ok", [False, False])


_PAIRWISE_TEXT = re.compile(
    r"Better:[ \t]*(?P<verdict>[^\n]*?)[ \t]*(?:\n+Rationale:[ \t]*(?P<rationale>.*))?",
    re.DOTALL,
)


def _load_json(text: str) -> object:
    """The decoded value, or a failed verdict naming why it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        # Cut off by max_tokens: the error sits at the very end, or in a string left open.
        cut_off = err.pos >= len(text) - 1 or err.msg.startswith("Unterminated string")
        return failed(0, "truncated_json" if cut_off else "invalid_json")


def _parse_json(text: str, count: int, allow_na: bool, with_rationale: bool) -> JudgeVerdict:
    value = _load_json(text)
    if isinstance(value, JudgeVerdict):
        return failed(count, value.status)
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
