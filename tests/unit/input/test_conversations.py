"""Conversations as prompts (`text/conversation.py`, `input/validate.py`): a message list's
last user turn is the instruction, the turns before it go with it to the pool, the judge and
the export; a broken list is one rejected row with its reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.generation.plan import plan_completions
from prefgen_dagster.ids import stable_hash
from prefgen_dagster.input.read import RawRow
from prefgen_dagster.input.validate import dedup_key, ingest, instruction_id
from prefgen_dagster.judge.plan import judge_groups, plan_judging
from prefgen_dagster.text.conversation import prompt_messages, prompt_text

FIELDS = ("messages", "conversations")
THREE_TURNS = [
    {"role": "system", "content": "You are a patient tutor."},
    {"role": "user", "content": "What is a prime?"},
    {"role": "assistant", "content": "A number with exactly two divisors."},
    {"role": "user", "content": "Is 1 one?"},
    {"role": "assistant", "content": "No: it has one divisor."},
    {"role": "user", "content": "And 2?"},
    {"role": "assistant", "content": "Yes, the only even one."},  # the dataset's own answer
]


def rows(*records: Any) -> list[RawRow]:
    return [RawRow(i + 1, json.dumps(r), r) for i, r in enumerate(records)]


def accepted_and_rejected(*records: Any) -> tuple[list[dict[str, Any]], list[str]]:
    result = ingest(rows(*records), "t.jsonl", "t.jsonl", conversation_fields=FIELDS)
    return result.accepted, [row["reason"] for row in result.rejected]


def test_the_last_user_turn_is_answered_with_the_turns_before_it() -> None:
    [row], [] = accepted_and_rejected({"messages": THREE_TURNS, "id": 7})
    assert row["instruction"] == "And 2?"
    assert row["system_prompt"] == "You are a patient tutor."
    assert json.loads(row["history"]) == THREE_TURNS[1:5]
    assert json.loads(row["input_fields"]) == {"id": 7}  # the list itself is the prompt
    # The export's prompt and what a reviewer sees: every turn up to the last user turn.
    assert prompt_messages(row) == THREE_TURNS[:6]
    # A prompt about the prompt (rewrite, judge) shows the conversation written out.
    shown = prompt_text(row)
    assert shown.index("What is a prime?") < shown.index("Is 1 one?") < shown.index("And 2?")
    assert "the only even one" not in shown


def test_sharegpt_conversations_read_the_same() -> None:
    turns = [
        {"from": "human", "value": "What is a prime?"},
        {"from": "gpt", "value": "A number with exactly two divisors."},
        {"from": "human", "value": "Is 1 one?"},
    ]
    [row], [] = accepted_and_rejected({"conversations": turns})
    assert row["instruction"] == "Is 1 one?" and row["system_prompt"] is None
    assert [turn["role"] for turn in json.loads(row["history"])] == ["user", "assistant"]


def test_a_single_instruction_keeps_its_id_and_has_no_history() -> None:
    [row], [] = accepted_and_rejected({"instruction": "Explain tides."})
    assert row["history"] is None
    # The id of a single instruction is what it was before conversations existed.
    assert row["instruction_id"] == stable_hash(["instruction", dedup_key("Explain tides."), ""])


def test_dedup_is_on_the_whole_conversation() -> None:
    other_history = [*THREE_TURNS[:3], {"role": "user", "content": "And 2?"}]
    accepted, reasons = accepted_and_rejected(
        {"messages": THREE_TURNS}, {"messages": other_history}, {"messages": THREE_TURNS[:6]}
    )
    # The same last turn after other turns is another prompt; the same turns (without the
    # dataset's own answer) are a duplicate.
    assert len(accepted) == 2 and reasons == ["duplicate of row 1"]
    ids = {row["instruction_id"] for row in accepted}
    assert instruction_id("And 2?", "You are a patient tutor.") not in ids


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        ("What is a prime?", "field 'messages' is not a non-empty list of messages"),
        ([], "field 'messages' is not a non-empty list of messages"),
        ([{"role": "assistant", "content": "Hi"}], "field 'messages' has no user message"),
        (
            [{"role": "narrator", "content": "Hi"}],
            "field 'messages' message 1 has role 'narrator'; known: user, human, assistant",
        ),
        ([{"role": "user", "content": 3}], "field 'messages' message 1: 'content' is int"),
        (["Hi"], "field 'messages' message 1 is str, not an object"),
        (
            [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}],
            "field 'messages': a system message after the first turn",
        ),
        (
            [{"role": "user", "content": " "}, {"role": "assistant", "content": "x"}]
            + [{"role": "user", "content": "Go on"}],
            "field 'messages' has an empty message",
        ),
        ([{"role": "user", "content": "\u200b "}], "field 'messages' has an empty last user"),
        (
            [{"role": "user", "content": "a\x07"}],
            "field 'messages' contains control character U+0007",
        ),
    ],
)
def test_a_broken_conversation_is_rejected_with_its_reason(messages: Any, reason: str) -> None:
    [], [found] = accepted_and_rejected({"messages": messages})
    assert found.startswith(reason), found


def test_the_pool_gets_every_turn_and_the_judge_sees_them(config: PipelineConfig) -> None:
    [row], [] = accepted_and_rejected({"messages": THREE_TURNS})
    plans = plan_completions([row], config, "t.jsonl")
    # The row's own system prompt wins over the pool member's, as for one instruction.
    assert len(plans) == 5 and all(plan.request.messages == THREE_TURNS[:6] for plan in plans)
    candidates = [
        {"completion_id": f"c{i}", "instruction_id": row["instruction_id"], "text": f"Yes {i}"}
        for i in range(2)
    ]
    groups = judge_groups(candidates, [], config, set())
    [judged] = plan_judging(groups, {row["instruction_id"]: row}, config, attempt=0)
    asked = "\n".join(message["content"] for message in judged.request.messages)
    assert "Is 1 one?" in asked and "the only even one" not in asked
