"""What an annotator sees and what a verdict means: the labeling interface, one task per pair,
and an annotation read back as a verdict on the pair as sent.

The task is blind: the conversation and the two texts, the chosen one on the side
`sample.chosen_shown` picked, and nothing of the judge (no scores, no models, no rationale).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# The interface: the conversation, the two answers side by side, and one of four verdicts.
# The choice values are what an annotation stores.
CHOICES = {
    "left": "A is better",
    "right": "B is better",
    "tie": "Equally good",
    "both_bad": "Both are bad",
}
LABEL_CONFIG = f"""<View>
  <Header value="The conversation"/>
  <Text name="prompt" value="$prompt"/>
  <View style="display: flex; gap: 2em">
    <View style="flex: 1"><Header value="Answer A"/><Text name="left" value="$left"/></View>
    <View style="flex: 1"><Header value="Answer B"/><Text name="right" value="$right"/></View>
  </View>
  <Header value="Which answer is better?"/>
  <Choices name="verdict" toName="prompt" choice="single-radio" required="true">
{chr(10).join(f'    <Choice value="{label}"/>' for label in CHOICES.values())}
  </Choices>
</View>"""
_BY_LABEL = {label: key for key, label in CHOICES.items()}


class UnreadableAnnotation(ValueError):
    """An annotation without exactly one of the interface's verdicts."""


def render_conversation(messages: Sequence[Mapping[str, str]]) -> str:
    """The prompt as the annotator reads it: each message under its role."""
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


def task_data(
    messages: Sequence[Mapping[str, str]], chosen: str, rejected: str, shown: str
) -> dict[str, Any]:
    """A task's data: the conversation and the two texts, the chosen one on the `shown` side
    (which side is chosen stays in DuckDB: anyone in the tool can read a task's data)."""
    left, right = (chosen, rejected) if shown == "left" else (rejected, chosen)
    return {"prompt": render_conversation(messages), "left": left, "right": right}


def verdict(result: Sequence[Mapping[str, Any]], chosen_shown: str) -> str:
    """chosen, rejected, tie or both_bad: an annotation's result on the pair as sent."""
    picks = [
        choice
        for item in result
        if item.get("from_name") == "verdict"
        for choice in item.get("value", {}).get("choices", [])
    ]
    if len(picks) != 1 or picks[0] not in _BY_LABEL:
        raise UnreadableAnnotation(f"expected one of {list(CHOICES.values())}, got {picks}")
    side = _BY_LABEL[picks[0]]
    if side in ("tie", "both_bad"):
        return side
    return "chosen" if side == chosen_shown else "rejected"
