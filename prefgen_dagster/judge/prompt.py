"""UltraFeedback judge prompts and their JSON schemas, for the three judge modes.

* listwise: all of an instruction's responses in one request, a 1-5 rating for each;
* pointwise: one response per request, one 1-5 rating (the rubric and the instruction come
  first, so requests for the same instruction share a prefix the engine can cache);
* pairwise: responses A and B, the better one named (or a tie).

The aspects and the 1-5 scale are UltraFeedback's; the wording is ours. `honesty` and
`truthfulness` admit "N/A" for responses where the aspect does not apply (e.g. fiction with
no factual claims); the other aspects always get a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NOT_APPLICABLE = "N/A"
PAIRWISE_VERDICTS = ("A", "B", "tie")


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

_RUBRIC = """{question}

Scale:
{scale}{na_line}

# Instruction
{instruction}"""

_LISTWISE = """Rate each response to the instruction below for one aspect: {title}.

{rubric}

# Responses
{responses}

Answer with JSON only, in this shape:
{shape}
with exactly {count} entries, in the order of the responses above."""

_POINTWISE = """Rate the response to the instruction below for one aspect: {title}.

{rubric}

# Response
{response}

Answer with JSON only, in this shape:
{shape}"""

_PAIRWISE = """Compare two responses to the instruction below for one aspect: {title}.

{rubric}

# Response A
{response_a}

# Response B
{response_b}

Which response is better for this aspect? Answer with JSON only, in this shape:
{shape}
where "better" is "A", "B", or "tie" when neither is better."""

_RATIONALE = '"rationale": "<one or two sentences>"'


def _rubric(aspect: str, instruction: str, rated: bool = True) -> tuple[Aspect, str]:
    """The aspect's question, scale and the instruction; "N/A" is offered only where a
    rating is asked for (`rated`) and the aspect allows it."""
    spec = ASPECTS[aspect]
    scale = "\n".join(f"{value} - {line}" for value, line in enumerate(spec.scale, start=1))
    na_line = (
        f'\n"{NOT_APPLICABLE}" - the aspect does not apply to this response.'
        if spec.allows_na and rated
        else ""
    )
    rubric = _RUBRIC.format(
        question=spec.question, scale=scale, na_line=na_line, instruction=instruction
    )
    return spec, rubric


def _rating_shape(with_rationale: bool) -> str:
    return '{"rating": <1-5>' + (f", {_RATIONALE}" if with_rationale else "") + "}"


def _messages(task: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": task}]


def listwise_messages(
    instruction: str, responses: list[str], aspect: str = "overall", with_rationale: bool = True
) -> list[dict[str, str]]:
    """Listwise: one request that rates all of an instruction's responses, in the given
    order."""
    spec, rubric = _rubric(aspect, instruction)
    blocks = "\n\n".join(
        f"## Response {number}\n{text}" for number, text in enumerate(responses, start=1)
    )
    return _messages(
        _LISTWISE.format(
            title=spec.title,
            rubric=rubric,
            responses=blocks,
            shape='{"ratings": [' + _rating_shape(with_rationale) + ", ...]}",
            count=len(responses),
        )
    )


def pointwise_messages(
    instruction: str, response: str, aspect: str = "overall", with_rationale: bool = True
) -> list[dict[str, str]]:
    """Pointwise: one response, one rating."""
    spec, rubric = _rubric(aspect, instruction)
    return _messages(
        _POINTWISE.format(
            title=spec.title, rubric=rubric, response=response, shape=_rating_shape(with_rationale)
        )
    )


def pairwise_messages(
    instruction: str,
    response_a: str,
    response_b: str,
    aspect: str = "overall",
    with_rationale: bool = True,
) -> list[dict[str, str]]:
    """Pairwise: which of A and B is better for the aspect."""
    spec, rubric = _rubric(aspect, instruction, rated=False)
    shape = '{"better": "A" | "B" | "tie"' + (f", {_RATIONALE}" if with_rationale else "") + "}"
    return _messages(
        _PAIRWISE.format(
            title=spec.title,
            rubric=rubric,
            response_a=response_a,
            response_b=response_b,
            shape=shape,
        )
    )


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _rating_properties(
    rationale_max_chars: int, aspect: str, with_rationale: bool
) -> dict[str, Any]:
    rating: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 5}
    if ASPECTS[aspect].allows_na:
        rating = {"anyOf": [rating, {"type": "string", "enum": [NOT_APPLICABLE]}]}
    properties: dict[str, Any] = {"rating": rating}
    if with_rationale:
        properties["rationale"] = {"type": "string", "maxLength": rationale_max_chars}
    return properties


def listwise_schema(
    count: int, rationale_max_chars: int, aspect: str = "overall", with_rationale: bool = True
) -> dict[str, Any]:
    """Listwise: a JSON schema that admits exactly `count` ratings, each an integer from 1
    to 5 (or "N/A" where the aspect allows it).

    Every value is bounded (rationale length too) so that a weak model cannot run on until
    `max_tokens`.
    """
    entry = _object(_rating_properties(rationale_max_chars, aspect, with_rationale))
    ratings = {"type": "array", "minItems": count, "maxItems": count, "items": entry}
    return _object({"ratings": ratings})


def pointwise_schema(
    rationale_max_chars: int, aspect: str = "overall", with_rationale: bool = True
) -> dict[str, Any]:
    """Pointwise: one rating (and rationale) object."""
    return _object(_rating_properties(rationale_max_chars, aspect, with_rationale))


def pairwise_schema(rationale_max_chars: int, with_rationale: bool = True) -> dict[str, Any]:
    """Pairwise: the better response's letter, or "tie"."""
    properties: dict[str, Any] = {"better": {"type": "string", "enum": list(PAIRWISE_VERDICTS)}}
    if with_rationale:
        properties["rationale"] = {"type": "string", "maxLength": rationale_max_chars}
    return _object(properties)
