"""Cheap measures of a text on its own, with no model: is it finished, empty, degenerate?

A completion that was cut at `max_tokens`, is empty, or loops on itself ("La la la la ...")
must never be the chosen side of a pair, and is never the intact side of a canary. The
SQL model `dpo_pairs.sql` applies the same rule to the stored `finish_reason`, `text` and
`repetition` columns (`can_be_chosen` there).
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+")
REPETITION_N = 3  # word n-grams


def words(text: str | None) -> list[str]:
    return _WORD.findall((text or "").lower())


def repetition(text: str | None) -> float:
    """The share of the text's word 3-grams that repeat an earlier one: about 0 for ordinary
    prose, 0.5 for a paragraph written twice, close to 1 for a loop of one phrase. Texts
    shorter than four words count as 0."""
    tokens = words(text)
    grams = [tuple(tokens[i : i + REPETITION_N]) for i in range(len(tokens) - REPETITION_N + 1)]
    if len(grams) < 2:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def can_be_chosen(
    text: str | None,
    finish_reason: str | None,
    repetition_share: float | None,
    max_repetition: float,
) -> bool:
    """Finished (not cut at `max_tokens`), not empty, and not degenerate."""
    return (
        finish_reason != "length"
        and bool((text or "").strip())
        and (repetition_share or 0.0) <= max_repetition
    )
