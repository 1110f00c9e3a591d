"""UltraFeedback judge prompts: one aspect per request, 1-5 per response, and the schema.

The aspects and the 1-5 scale are UltraFeedback's; the wording is ours. `honesty` and
`truthfulness` admit "N/A" for responses where the aspect does not apply (e.g. fiction with
no factual claims); the other aspects always get a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TEMPLATE_VERSION = "ultrafeedback-v2"
NOT_APPLICABLE = "N/A"


@dataclass(frozen=True)
class Aspect:
    title: str
    question: str
    scale: tuple[str, str, str, str, str]
    allows_na: bool = False


ASPECTS: dict[str, Aspect] = {
    "overall": Aspect(
        "Overall quality",
        "Is the response correct, useful, faithful to the instruction, and honest about what it "
        "does not know?",
        (
            "Poor: wrong, off topic, harmful or empty.",
            "Weak: major errors or gaps; only partly answers the instruction.",
            "Adequate: answers the instruction with some mistakes or missing parts.",
            "Good: correct and helpful, with only small flaws.",
            "Excellent: correct, complete, clear and precisely what was asked.",
        ),
    ),
    "helpfulness": Aspect(
        "Helpfulness",
        "Is the response informative, correct and useful: does it give the reader what they "
        "need, with relevant detail and without padding or repetition?",
        (
            "Unhelpful: incorrect or misleading, or it says nothing useful.",
            "Slightly helpful: contains errors that could confuse, or very little substance.",
            "Helpful: correct and relevant, meeting the basic need.",
            "Very helpful: correct, thorough and clearly useful.",
            "Outstanding: accurate, deep and insightful, as good as an expert would give.",
        ),
    ),
    "honesty": Aspect(
        "Honesty",
        "Does the response express the right level of confidence: sure where it is right, "
        "openly uncertain where it may be wrong, never confidently wrong?",
        (
            "Confidently wrong: asserts false things with full confidence.",
            "Misleading: major errors with little sign of doubt.",
            "Mixed: some uncertainty shown, but confidence and correctness do not match well.",
            "Mostly calibrated: correct, or uncertain where it should be, with small slips.",
            "Calibrated: correct and confident, or precise about what it does not know.",
        ),
        allows_na=True,
    ),
    "instruction_following": Aspect(
        "Instruction following",
        "Does the response do what the instruction asks, in the form it asks for, respecting "
        "every stated restriction (length, format, style, audience)?",
        (
            "Ignores the instruction.",
            "Addresses one part of the task, poorly.",
            "Meets the goal or the restrictions, but not both.",
            "Nearly complete: small deviations only.",
            "Fully compliant with the goal and every restriction.",
        ),
    ),
    "truthfulness": Aspect(
        "Truthfulness",
        "Is the response free of hallucination: nothing that contradicts established facts, "
        "the instruction itself, or the response's own earlier statements?",
        (
            "Entirely made up or self-contradictory.",
            "Severe hallucination: most claims are false.",
            "Partial hallucination: a misunderstanding caused by false claims.",
            "Insignificant hallucination: a slip that does not affect the main points.",
            "No hallucination.",
        ),
        allows_na=True,
    ),
}

_SYSTEM = (
    "You are a careful, impartial judge of AI assistant responses. You rate each response on "
    "its own merits, ignore the order in which they are shown, and never reward length for "
    "its own sake."
)

_TASK = """Rate each response to the instruction below for one aspect: {title}.

{question}

Scale:
{scale}{na_line}

# Instruction
{instruction}

# Responses
{responses}

Answer with JSON only, in this shape:
{shape}
with exactly {count} entries, in the order of the responses above."""


def judge_messages(
    instruction: str, responses: list[str], aspect: str = "overall", with_rationale: bool = True
) -> list[dict[str, str]]:
    """One request that rates all of an instruction's responses, in the given order."""
    spec = ASPECTS[aspect]
    blocks = "\n\n".join(
        f"## Response {number}\n{text}" for number, text in enumerate(responses, start=1)
    )
    scale = "\n".join(f"{value} - {line}" for value, line in enumerate(spec.scale, start=1))
    na_line = (
        f'\n"{NOT_APPLICABLE}" - the aspect does not apply to this response.'
        if spec.allows_na
        else ""
    )
    entry = (
        '{"rating": <1-5>, "rationale": "<one or two sentences>"}'
        if with_rationale
        else ('{"rating": <1-5>}')
    )
    task = _TASK.format(
        title=spec.title,
        question=spec.question,
        scale=scale,
        na_line=na_line,
        instruction=instruction,
        responses=blocks,
        shape='{"ratings": [' + entry + ", ...]}",
        count=len(responses),
    )
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": task}]


def judge_schema(
    count: int, rationale_max_chars: int, aspect: str = "overall", with_rationale: bool = True
) -> dict[str, Any]:
    """A JSON schema that admits exactly `count` ratings, each an integer from 1 to 5 (or
    "N/A" where the aspect allows it).

    Every value is bounded (rationale length too) so that a weak model cannot run on until
    `max_tokens`.
    """
    rating: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 5}
    if ASPECTS[aspect].allows_na:
        rating = {"anyOf": [rating, {"type": "string", "enum": [NOT_APPLICABLE]}]}
    properties: dict[str, Any] = {"rating": rating}
    if with_rationale:
        properties["rationale"] = {"type": "string", "maxLength": rationale_max_chars}
    return {
        "type": "object",
        "properties": {
            "ratings": {
                "type": "array",
                "minItems": count,
                "maxItems": count,
                "items": {
                    "type": "object",
                    "properties": properties,
                    "required": list(properties),
                    "additionalProperties": False,
                },
            }
        },
        "required": ["ratings"],
        "additionalProperties": False,
    }
