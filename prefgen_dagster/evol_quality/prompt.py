"""EvolQuality: ask a model to rewrite a response so it is better along one criterion."""

from __future__ import annotations

import sys

from prefgen_dagster.ids import seed_from, source_version

# What each criterion asks of the rewrite. The five criteria are EvolQuality's; the wording
# is ours.
CRITERION_GOALS: dict[str, str] = {
    "helpfulness": (
        "Make the response more useful to the person who asked: answer what they actually "
        "need, add the practical steps or facts that are missing, and remove anything that "
        "does not help."
    ),
    "relevance": (
        "Keep the response on topic: every sentence should serve the instruction. Cut "
        "digressions and make sure each part of the request is addressed."
    ),
    "deepening": (
        "Go deeper: explain the reasoning behind the answer, cover edge cases and "
        "trade-offs, and give the depth an expert reader would expect."
    ),
    "creativity": (
        "Make the response more original and engaging while keeping it correct: a fresh "
        "angle, a vivid example or a clearer structure."
    ),
    "details": (
        "Add concrete detail: specific numbers, names, examples and steps in place of vague "
        "statements, without padding."
    ),
}

_REWRITE = """You improve answers written by an AI assistant.

Goal for this rewrite: {goal}

Rules:
- Keep what is already correct; fix what is wrong.
- Answer the same instruction; do not change what was asked.
- Reply with the improved response only, with no preface and no notes about the changes.

{instruction_heading}
{instruction}

{response_heading}
{response}

{answer_heading}
"""
# The rewrite prompt's section headings: a rewrite that repeats one has copied the prompt
# (such a text is never chosen; see `text.quality.echoed_marker`).
HEADINGS = {
    "instruction_heading": "# Instruction",
    "response_heading": "# Response to improve",
    "answer_heading": "# Improved response",
}


def choose_criterion(
    seed: int, root_completion_id: str, round_index: int, criteria: list[str]
) -> str:
    """The criterion for one row and round, fixed by the seed and the row's id alone.

    Because the choice never depends on the batch, the same row gets the same criterion
    whatever else is processed with it.
    """
    return criteria[
        seed_from("evol-criterion", seed, root_completion_id, round_index) % len(criteria)
    ]


def evol_messages(
    instruction: str, response: str, criterion: str, custom_goals: dict[str, str] | None = None
) -> list[dict[str, str]]:
    """The rewrite request; `custom_goals` adds criteria of the user's own (name -> goal)."""
    goal = {**CRITERION_GOALS, **(custom_goals or {})}[criterion]
    prompt = _REWRITE.format(goal=goal, instruction=instruction, response=response, **HEADINGS)
    return [{"role": "user", "content": prompt}]


# In every completion id: edit the template and its rows are new ones (asked anew).
TEMPLATE_VERSION = source_version("evol-quality", sys.modules[__name__])
