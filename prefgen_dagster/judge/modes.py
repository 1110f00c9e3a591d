"""The judge modes, one object each: which requests a group of texts gets, each request's
messages and JSON schema, how its answer parses, and how long a schema-valid answer can be.
Everything that differs between modes is here; the planner, the stage and the estimate ask
`MODES[judge.mode]` (the prompts' wording is `prompt.py`, the parsers `parse.py`).

* listwise: one request per order (`judge.orders`), showing all the group's texts;
* pointwise: one request per text;
* pairwise: one request per two texts and order, (A, B) and (B, A).

Pointwise and pairwise requests are seeded by the texts they show, so the same text of the
same instruction (a candidate that is also a canary's intact side) is asked once.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.config.judge import JudgeConfig
from prefgen_dagster.ids import stable_hash
from prefgen_dagster.judge import parse, prompt

# (slot, the (id, text) items shown in order, the order's name) of one request of a group.
Request = tuple[str, list[tuple[str, str]], str]
# Tokens for the JSON around the values: braces, keys, quotes, commas (generous, so that
# tokenizers that split punctuation finely still fit).
_ENVELOPE_TOKENS = 8
_ENTRY_TOKENS = 16


def ordered(items: list[Any], order: str) -> list[Any]:
    """The items in one of the judge orders: as given, reversed, or rotated by half."""
    if order == "reversed":
        return items[::-1]
    if order == "rotated" and items:
        shift = max(1, len(items) // 2)
        return items[shift:] + items[:shift]
    return list(items)


class JudgeMode(ABC):
    name: str
    # Each request shows one text: no text is seen at two positions, so no position effect.
    one_text_per_request = False

    def orders(self, judge: JudgeConfig) -> tuple[str, ...]:
        """The orders a group's texts are shown in (one: each request orders its own)."""
        return ("original",)

    @abstractmethod
    def requests(self, items: list[tuple[str, str]], orders: tuple[str, ...]) -> list[Request]:
        """Every request a group of (id, text) items gets."""

    def seed_basis(self, group_id: str, instruction_id: str, order: str, texts: list[str]) -> list:
        """What a request's seed is drawn from besides the judge, aspect and attempt: the
        texts it shows (so a text shown twice is asked once)."""
        return [instruction_id, *(stable_hash(text) for text in texts)]

    @abstractmethod
    def messages(
        self, instruction: str, texts: list[str], aspect: str, with_rationale: bool
    ) -> list[dict[str, str]]:
        """The chat messages of a request showing `texts` in order."""

    @abstractmethod
    def schema(
        self, count: int, aspect: str, rationale_max_chars: int, with_rationale: bool
    ) -> dict[str, Any] | None:
        """The JSON schema of the answer to a request showing `count` texts (None: the
        answer is not JSON)."""

    @abstractmethod
    def parse(
        self, text: str | None, count: int, allow_na: bool = False, with_rationale: bool = True
    ) -> parse.JudgeVerdict:
        """An answer as ratings of the `count` texts it was shown, or a named failure."""

    def entries(self, count: int) -> int:
        """How many rating objects (each with its rationale, if asked) an answer holds."""
        return 1

    @abstractmethod
    def skeleton(self, count: int, aspect: str, with_rationale: bool) -> str:
        """The longest answer the schema admits with every rationale empty, compact (the
        widest value in each place: "N/A" where the aspect allows it, "tie"): the JSON an
        answer takes besides its rationales' text."""

    def token_bound(self, count: int, rationale_max_chars: int, with_rationale: bool = True) -> int:
        """The most tokens a schema-valid answer can take, counting a rationale at one token
        per character (a weak model may write it one character at a time): the judge's
        `max_tokens` when the config leaves it unset."""
        per_entry = _ENTRY_TOKENS + (rationale_max_chars if with_rationale else 0)
        return _ENVELOPE_TOKENS + self.entries(count) * per_entry


def _rating_entry(aspect: str, with_rationale: bool) -> dict[str, Any]:
    rating = prompt.NOT_APPLICABLE if prompt.ASPECTS[aspect].allows_na else 5
    return {"rating": rating, **({"rationale": ""} if with_rationale else {})}


def _compact(answer: dict[str, Any]) -> str:
    return json.dumps(answer, separators=(",", ":"))


class Listwise(JudgeMode):
    name = "listwise"

    def orders(self, judge: JudgeConfig) -> tuple[str, ...]:
        return tuple(judge.orders)

    def requests(self, items: list[tuple[str, str]], orders: tuple[str, ...]) -> list[Request]:
        return [(order, ordered(items, order), order) for order in orders]

    def seed_basis(self, group_id: str, instruction_id: str, order: str, texts: list[str]) -> list:
        return [group_id, order]

    def messages(
        self, instruction: str, texts: list[str], aspect: str, with_rationale: bool
    ) -> list[dict[str, str]]:
        return prompt.listwise_messages(instruction, texts, aspect, with_rationale)

    def schema(
        self, count: int, aspect: str, rationale_max_chars: int, with_rationale: bool
    ) -> dict[str, Any]:
        return prompt.listwise_schema(count, rationale_max_chars, aspect, with_rationale)

    def parse(
        self, text: str | None, count: int, allow_na: bool = False, with_rationale: bool = True
    ) -> parse.JudgeVerdict:
        return parse.parse_listwise_output(text, count, allow_na, with_rationale)

    def entries(self, count: int) -> int:
        return count

    def skeleton(self, count: int, aspect: str, with_rationale: bool) -> str:
        return _compact({"ratings": [_rating_entry(aspect, with_rationale)] * count})


class Pointwise(JudgeMode):
    name = "pointwise"
    one_text_per_request = True

    def requests(self, items: list[tuple[str, str]], orders: tuple[str, ...]) -> list[Request]:
        return [(item_id, [(item_id, text)], "original") for item_id, text in items]

    def messages(
        self, instruction: str, texts: list[str], aspect: str, with_rationale: bool
    ) -> list[dict[str, str]]:
        return prompt.pointwise_messages(instruction, texts[0], aspect, with_rationale)

    def schema(
        self, count: int, aspect: str, rationale_max_chars: int, with_rationale: bool
    ) -> dict[str, Any]:
        return prompt.pointwise_schema(rationale_max_chars, aspect, with_rationale)

    def parse(
        self, text: str | None, count: int, allow_na: bool = False, with_rationale: bool = True
    ) -> parse.JudgeVerdict:
        return parse.parse_pointwise_output(text, allow_na, with_rationale)

    def skeleton(self, count: int, aspect: str, with_rationale: bool) -> str:
        return _compact(_rating_entry(aspect, with_rationale))


class Pairwise(JudgeMode):
    name = "pairwise"

    def requests(self, items: list[tuple[str, str]], orders: tuple[str, ...]) -> list[Request]:
        requests = []
        for i, first in enumerate(items):
            for second in items[i + 1 :]:
                requests.append((f"{first[0]}>{second[0]}", [first, second], "original"))
                requests.append((f"{second[0]}>{first[0]}", [second, first], "reversed"))
        return requests

    def messages(
        self, instruction: str, texts: list[str], aspect: str, with_rationale: bool
    ) -> list[dict[str, str]]:
        return prompt.pairwise_messages(instruction, texts[0], texts[1], aspect, with_rationale)

    def schema(
        self, count: int, aspect: str, rationale_max_chars: int, with_rationale: bool
    ) -> dict[str, Any]:
        return prompt.pairwise_schema(rationale_max_chars, with_rationale)

    def parse(
        self, text: str | None, count: int, allow_na: bool = False, with_rationale: bool = True
    ) -> parse.JudgeVerdict:
        return parse.parse_pairwise_output(text, with_rationale)

    def skeleton(self, count: int, aspect: str, with_rationale: bool) -> str:
        widest = max(prompt.PAIRWISE_VERDICTS, key=len)
        return _compact({"better": widest, **({"rationale": ""} if with_rationale else {})})


class Reward(JudgeMode):
    """A reward model's scores: one request per text, the instruction and the text as a chat
    of two turns; no schema, no rationale; the answer is the score (its rating, 1-5, comes
    from the batch's scores of that judge, `judge/reward.py`). One text per request, so no
    position effect by construction."""

    name = "reward"
    one_text_per_request = True

    def requests(self, items: list[tuple[str, str]], orders: tuple[str, ...]) -> list[Request]:
        return Pointwise().requests(items, orders)

    def messages(
        self, instruction: str, texts: list[str], aspect: str, with_rationale: bool
    ) -> list[dict[str, str]]:
        return [
            {"role": "user", "content": instruction},
            {"role": "assistant", "content": texts[0]},
        ]

    def schema(
        self, count: int, aspect: str, rationale_max_chars: int, with_rationale: bool
    ) -> dict[str, Any] | None:
        return None

    def parse(
        self, text: str | None, count: int, allow_na: bool = False, with_rationale: bool = True
    ) -> parse.JudgeVerdict:
        return parse.parse_reward_output(text)

    def skeleton(self, count: int, aspect: str, with_rationale: bool) -> str:
        return ""

    def token_bound(self, count: int, rationale_max_chars: int, with_rationale: bool = True) -> int:
        return 1  # nothing is generated; the request still names a bound


MODES: dict[str, JudgeMode] = {
    mode.name: mode for mode in (Listwise(), Pointwise(), Pairwise(), Reward())
}


def mode_of(config: PipelineConfig, judge_name: str) -> JudgeMode:
    """The mode a panel judge rates in: a reward model's own, else the panel's."""
    assert config.judge is not None
    kind = config.models[judge_name].kind
    return MODES["reward"] if kind == "reward" else MODES[config.judge.mode]
