"""The UltraFeedback judge prompt (overall quality, 1-5) and its output schema."""

from __future__ import annotations

from typing import Any

TEMPLATE_VERSION = "ultrafeedback-overall-v1"

# UltraFeedback's overall-quality scale, described in our own words.
_SYSTEM = (
    "You are a careful, impartial judge of AI assistant responses. You rate each response on "
    "its own merits and never reward length for its own sake."
)

_TASK = """Rate the overall quality of each response to the instruction below.

Consider whether the response is correct, whether it is useful, whether it does what the
instruction asks, and whether it is honest about what it does not know.

Scale:
1 - Poor: wrong, off topic, harmful or empty.
2 - Weak: major errors or gaps; only partly answers the instruction.
3 - Adequate: answers the instruction with some mistakes or missing parts.
4 - Good: correct and helpful, with only small flaws.
5 - Excellent: correct, complete, clear and precisely what was asked.

# Instruction
{instruction}

# Responses
{responses}

Answer with JSON only, in this shape:
{{"ratings": [{{"rating": <1-5>, "rationale": "<one or two sentences>"}}, ...]}}
with exactly {count} entries, in the order of the responses above."""


def judge_messages(instruction: str, responses: list[str]) -> list[dict[str, str]]:
    """One request that rates all of an instruction's responses together."""
    blocks = "\n\n".join(
        f"## Response {number}\n{text}" for number, text in enumerate(responses, start=1)
    )
    task = _TASK.format(instruction=instruction, responses=blocks, count=len(responses))
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": task}]


def judge_schema(count: int, rationale_max_chars: int) -> dict[str, Any]:
    """A JSON schema that admits exactly `count` ratings, each an integer from 1 to 5.

    Every value is bounded (rationale length too) so that a weak model cannot run on until
    `max_tokens`.
    """
    return {
        "type": "object",
        "properties": {
            "ratings": {
                "type": "array",
                "minItems": count,
                "maxItems": count,
                "items": {
                    "type": "object",
                    "properties": {
                        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
                        "rationale": {"type": "string", "maxLength": rationale_max_chars},
                    },
                    "required": ["rating", "rationale"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["ratings"],
        "additionalProperties": False,
    }
