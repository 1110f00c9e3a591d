"""Cheap measures of a text on its own, with no model: is it finished, empty, degenerate?

A completion that was cut at `max_tokens`, is empty, loops on itself ("La la la la ...") or
echoes a marker of its prompt must never be the chosen side of a pair, and is never the
intact side of a canary. The SQL model `candidates.sql` applies the same rule to the stored
`finish_reason`, `text`, `repetition` and `echoed_marker` columns (`not_chosen_because`).
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+")
REPETITION_N = 3  # word n-grams
# Turn markers of common chat templates (ChatML, Llama 3, Mistral, Gemma, Zephyr/Phi). In an
# answer they mean the model ran past its turn or copied the prompt's markup.
CHAT_MARKERS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|start_header_id|>",
    "<|eot_id|>",
    "[INST]",
    "[/INST]",
    "<start_of_turn>",
    "<end_of_turn>",
    "<|user|>",
    "<|assistant|>",
    "<|system|>",
)


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


def echoed_marker(text: str | None, headings: tuple[str, ...] = ()) -> str | None:
    """The first chat-template marker found anywhere in the text, or else the first prompt
    heading (`headings`) that stands on a line of its own, if any."""
    text = text or ""
    for marker in CHAT_MARKERS:
        if marker in text:
            return marker
    lines = {line.strip().casefold() for line in text.splitlines()}
    return next((h for h in headings if h.casefold() in lines), None)


def can_be_chosen(
    text: str | None,
    finish_reason: str | None,
    repetition_share: float | None,
    max_repetition: float,
    marker: str | None = None,
) -> bool:
    """Finished (not cut at `max_tokens`), not empty, not degenerate, echoes no marker."""
    return (
        finish_reason != "length"
        and bool((text or "").strip())
        and (repetition_share or 0.0) <= max_repetition
        and marker is None
    )
