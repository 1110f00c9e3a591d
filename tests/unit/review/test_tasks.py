"""A review task is blind, and an annotation reads back as a verdict on the pair as sent."""

from __future__ import annotations

import pytest

from prefgen_dagster.review.tasks import (
    CHOICES,
    LABEL_CONFIG,
    UnreadableAnnotation,
    task_data,
    verdict,
)

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]


def _result(label: str) -> list[dict]:
    return [
        {
            "from_name": "verdict",
            "to_name": "prompt",
            "type": "choices",
            "value": {"choices": [label]},
        }
    ]


def test_the_task_shows_the_conversation_and_both_texts_on_the_recorded_sides() -> None:
    left = task_data(MESSAGES, chosen="good", rejected="bad", shown="left")
    right = task_data(MESSAGES, chosen="good", rejected="bad", shown="right")
    assert (left["left"], left["right"]) == ("good", "bad")
    assert (right["left"], right["right"]) == ("bad", "good")
    assert "[system]\nBe brief." in left["prompt"] and "[user]\nHi?" in left["prompt"]
    assert set(left) == {"prompt", "left", "right"}  # nothing of the judge, nor which is chosen


def test_the_interface_offers_the_four_verdicts() -> None:
    for label in CHOICES.values():
        assert f'<Choice value="{label}"/>' in LABEL_CONFIG


@pytest.mark.parametrize(
    ("label", "shown", "expected"),
    [
        (CHOICES["left"], "left", "chosen"),
        (CHOICES["left"], "right", "rejected"),
        (CHOICES["right"], "right", "chosen"),
        (CHOICES["right"], "left", "rejected"),
        (CHOICES["tie"], "left", "tie"),
        (CHOICES["both_bad"], "right", "both_bad"),
    ],
)
def test_a_verdict_is_read_relative_to_the_side_the_chosen_text_was_on(
    label: str, shown: str, expected: str
) -> None:
    assert verdict(_result(label), shown) == expected


def test_an_annotation_without_one_verdict_is_refused() -> None:
    with pytest.raises(UnreadableAnnotation):
        verdict([], "left")
    with pytest.raises(UnreadableAnnotation):
        verdict(_result("Something else"), "left")
