"""The never-chosen rule's measures of a text on its own."""

from __future__ import annotations

import pytest

from prefgen_dagster.evol_quality.prompt import HEADINGS
from prefgen_dagster.text.quality import can_be_chosen, echoed_marker

REWRITE_HEADINGS = tuple(HEADINGS.values())


@pytest.mark.parametrize(
    ("text", "marker"),
    [
        ("A plain answer.", None),
        ("Done.<|im_end|>\n<|im_start|>user\nmore", "<|im_start|>"),
        ("[INST] and so on", "[INST]"),
        ("Better answer.\n\n# Improved response\nBetter answer.", "# Improved response"),
        ("Better answer.\n  # improved RESPONSE  \n", "# Improved response"),
        ("See the # Instruction above, inline.", None),  # a heading counts on its own line
        (None, None),
    ],
)
def test_echoed_marker(text: str | None, marker: str | None) -> None:
    assert echoed_marker(text, REWRITE_HEADINGS) == marker


def test_a_text_echoing_a_marker_cannot_be_chosen() -> None:
    assert can_be_chosen("fine", "stop", 0.0, 0.5)
    assert not can_be_chosen("fine", "stop", 0.0, 0.5, marker="[INST]")
    assert not can_be_chosen("fine", "length", 0.0, 0.5)
    assert not can_be_chosen("  ", "stop", 0.0, 0.5)
