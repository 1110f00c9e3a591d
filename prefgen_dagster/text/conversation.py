"""Conversations as prompts. An input row may hold a message list instead of one instruction
(`messages` with `role`/`content`, or ShareGPT's `conversations` with `from`/`value`): its
last user turn is the instruction, a leading system message its system prompt, and the turns
between are its `history`, stored as JSON on the instruction's row. Every turn up to the last
user turn is sent to the pool; the turns after it (a dataset's own answer) are left out.

A stage that asks a model about the prompt (the rewriter, the judge) shows it as
`prompt_text`: the instruction alone, or the conversation written out with the last user turn
marked; the export's `prompt` and the pool's messages are the message list itself
(`prompt_messages`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# Roles as datasets write them -> the chat roles.
ROLES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "system": "system",
}
# (role key, text key) of a turn: OpenAI-style messages, then ShareGPT.
TURN_KEYS = (("role", "content"), ("from", "value"))

Turn = dict[str, str]


class BadConversation(ValueError):
    """Why a message list cannot be a prompt (one line, naming the turn)."""


def split_conversation(turns: Any, field: str) -> tuple[str, str | None, list[Turn]]:
    """(the last user turn's text, the leading system message's text or None, the turns
    between) of a message list; `BadConversation` says what is wrong with it. Texts come as
    they are: the caller normalizes and checks them."""
    if not isinstance(turns, list) or not turns:
        raise BadConversation(f"field {field!r} is not a non-empty list of messages")
    read = [_turn(turn, field, index) for index, turn in enumerate(turns)]
    system = read[0]["content"] if read[0]["role"] == "system" else None
    body = read[1:] if system is not None else read
    if any(turn["role"] == "system" for turn in body):
        raise BadConversation(f"field {field!r}: a system message after the first turn")
    last_user = max((i for i, turn in enumerate(body) if turn["role"] == "user"), default=None)
    if last_user is None:
        raise BadConversation(f"field {field!r} has no user message")
    return body[last_user]["content"], system, body[:last_user]


def _turn(turn: Any, field: str, index: int) -> Turn:
    where = f"field {field!r} message {index + 1}"
    if not isinstance(turn, Mapping):
        raise BadConversation(f"{where} is {type(turn).__name__}, not an object")
    for role_key, text_key in TURN_KEYS:
        if role_key in turn:
            role, text = turn.get(role_key), turn.get(text_key)
            if role not in ROLES:
                raise BadConversation(f"{where} has role {role!r}; known: {', '.join(ROLES)}")
            if not isinstance(text, str):
                kind = "missing" if text is None else type(text).__name__
                raise BadConversation(f"{where}: {text_key!r} is {kind}, not a string")
            return {"role": ROLES[role], "content": text}
    raise BadConversation(f"{where} has neither 'role' nor 'from'")


def history_of(row: Mapping[str, Any]) -> list[Turn]:
    """The earlier turns of an instruction row (none for a single instruction)."""
    stored = row.get("history")
    return json.loads(stored) if stored else []


def with_history(messages: list[Turn], row: Mapping[str, Any]) -> list[Turn]:
    """`messages` (an optional system message, then the instruction as the user turn) with a
    conversation's earlier turns put before that last user turn."""
    return [*messages[:-1], *history_of(row), messages[-1]]


def prompt_messages(row: Mapping[str, Any]) -> list[Turn]:
    """The prompt as chat messages: the row's system prompt, the earlier turns, then the
    instruction as the last user turn (the export's `prompt`, what a reviewer sees)."""
    system = row.get("system_prompt")
    head = [{"role": "system", "content": system}] if system else []
    return with_history([*head, {"role": "user", "content": row["instruction"]}], row)


def prompt_text(row: Mapping[str, Any]) -> str:
    """The prompt as one text for a prompt about it: the instruction, or the conversation
    written out turn by turn, ending with the user message that the answers answer."""
    history = history_of(row)
    if not history:
        return row["instruction"]
    lines = [f"[{turn['role']}]\n{turn['content']}" for turn in history]
    return "\n\n".join(
        ["A conversation so far:", *lines, f"[user, the message to answer]\n{row['instruction']}"]
    )
