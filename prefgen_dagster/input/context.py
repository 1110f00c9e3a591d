"""Does a prompt fit the generation pool's context windows? Checked when a batch is read, so
an instruction too long for a pool model is rejected with a reason up front, instead of
failing inside an engine later or being cut short without anyone knowing.

Room for a prompt on a pool member = the model's `max_model_len`, minus the member's
`max_tokens` (the answer), minus `input.context_margin_tokens` (the chat template's markup),
minus the member's longest system prompt unless the row brings its own (the row's replaces
the pool's, see `generation.prompt`, so it is counted as part of the row's prompt instead).

Tokens are counted with `llm.tokens` (the model's own tokenizer where its folder has one,
else an estimate that errs towards rejecting), the counter the cost estimate uses too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.llm.tokens import TokenCounter, TokenCounters


@dataclass(frozen=True)
class MemberRoom:
    """What one pool member leaves for a row's prompt."""

    model: str
    max_model_len: int
    answer_tokens: int
    system_tokens: int  # the member's longest system prompt
    margin_tokens: int
    counter: TokenCounter

    def room(self, own_system_prompt: bool) -> int:
        used = self.answer_tokens + self.margin_tokens
        return self.max_model_len - used - (0 if own_system_prompt else self.system_tokens)

    def overflow_reason(self, needed: int, own_system_prompt: bool) -> str:
        what = "instruction and system prompt need" if own_system_prompt else "instruction needs"
        amount = f"{needed} tokens"
        if not self.counter.exact:
            amount = f"about {amount} ({self.counter.method})"
        kept = [f"{self.answer_tokens} for the answer"]
        if self.system_tokens and not own_system_prompt:
            kept.append(f"{self.system_tokens} for its system prompt")
        if self.margin_tokens:
            kept.append(f"{self.margin_tokens} for the chat template")
        kept_text = kept[0] if len(kept) == 1 else ", ".join(kept[:-1]) + " and " + kept[-1]
        return (
            f"{what} {amount}, more than the {self.room(own_system_prompt)} that pool model "
            f"{self.model!r} has room for (max_model_len {self.max_model_len} minus {kept_text})"
        )


class ContextLimits:
    """Checks prompts against every pool member, tightest first."""

    def __init__(self, members: list[MemberRoom]) -> None:
        self.members = sorted(members, key=lambda member: member.room(False))
        self._counters = {member.counter.method: member.counter for member in self.members}

    @classmethod
    def from_config(cls, config: PipelineConfig) -> ContextLimits:
        counters = TokenCounters(config)
        members = []
        for member in config.generation.pool:
            spec = config.models[member.model]
            counter = counters.for_model(member.model)
            system_prompts = [text for text in member.system_prompts() if text]
            room = MemberRoom(
                model=member.model,
                max_model_len=spec.max_model_len,
                answer_tokens=member.sampling.max_tokens,
                system_tokens=max(counter.count(system_prompts), default=0),
                margin_tokens=config.input.context_margin_tokens,
                counter=counter,
            )
            if room.room(False) <= 0:
                raise ValueError(
                    f"pool model {member.model!r} leaves no room for a prompt: max_model_len "
                    f"{spec.max_model_len}, max_tokens {member.sampling.max_tokens}, system "
                    f"prompt {room.system_tokens} tokens, margin {room.margin_tokens}"
                )
            members.append(room)
        return cls(members)

    def check(self, prompts: Sequence[tuple[str, str | None]]) -> list[str | None]:
        """For each (instruction, system prompt): None if it fits every pool member, else the
        reason it does not (naming the tightest member it overflows)."""
        instructions = [instruction for instruction, _ in prompts]
        systems = list(dict.fromkeys(system for _, system in prompts if system))
        counted = {}
        for method, counter in self._counters.items():
            system_counts = dict(zip(systems, counter.count(systems), strict=True))
            counted[method] = (counter.count(instructions), system_counts)
        reasons: list[str | None] = []
        for index, (_, system) in enumerate(prompts):
            reason = None
            for member in self.members:
                instruction_counts, system_counts = counted[member.counter.method]
                needed = instruction_counts[index] + (system_counts[system] if system else 0)
                if needed > member.room(bool(system)):
                    reason = member.overflow_reason(needed, bool(system))
                    break
            reasons.append(reason)
        return reasons

    def describe(self) -> list[dict[str, Any]]:
        """One entry per pool member, for the asset's metadata."""
        return [
            {
                "model": member.model,
                "max_model_len": member.max_model_len,
                "answer_tokens": member.answer_tokens,
                "system_prompt_tokens": member.system_tokens,
                "margin_tokens": member.margin_tokens,
                "room_for_prompt": member.room(False),
                "counted_with": member.counter.method,
            }
            for member in self.members
        ]
