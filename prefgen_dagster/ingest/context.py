"""Does a prompt fit the generation pool's context windows? Checked when a batch is read, so
an instruction too long for a pool model is rejected with a reason up front, instead of
failing inside an engine later or being cut short without anyone knowing.

Room for a prompt on a pool member = the model's `max_model_len`, minus the member's
`max_tokens` (the answer), minus `input.context_margin_tokens` (the chat template's markup),
minus the member's longest system prompt unless the row brings its own (the row's replaces
the pool's, see `prompts.generation`, so it is counted as part of the row's prompt instead).

Counting: a model whose path is a local folder with a `tokenizer.json` is counted exactly with
the `tokenizers` library, a whole chunk of texts per call. Any other model (a hub name, a
server we have no tokenizer for) or a machine without `tokenizers` gets an estimate of UTF-8
bytes / 2, rounded up: about twice what BPE tokenizers give for English and close to their
count for CJK text, so it errs towards rejecting, and it gives the same answer on every
machine, so a file is split into the same accepted and rejected rows everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefgen_dagster.config import PipelineConfig

BYTES_PER_TOKEN_ESTIMATE = 2


@dataclass(frozen=True)
class TokenCounter:
    """Counts the tokens of many texts in one call; `method` says how (shown in reasons)."""

    method: str
    count: Callable[[list[str]], list[int]]
    exact: bool = True


def estimate_tokens(texts: list[str]) -> list[int]:
    return [-(-len(text.encode("utf-8")) // BYTES_PER_TOKEN_ESTIMATE) for text in texts]


BYTE_ESTIMATE = TokenCounter(
    f"estimate: UTF-8 bytes / {BYTES_PER_TOKEN_ESTIMATE}", estimate_tokens, exact=False
)


def tokenizer_counter(tokenizer_file: Path) -> TokenCounter | None:
    """An exact counter from a `tokenizer.json`, or None where `tokenizers` cannot load."""
    try:
        from tokenizers import Tokenizer
    except Exception:  # a broken install can fail with more than ImportError
        return None
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    # Some tokenizer.json files switch truncation on, which would cap every count.
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def count(texts: list[str]) -> list[int]:
        encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
        return [len(encoding.ids) for encoding in encodings]

    return TokenCounter(f"tokenizer {tokenizer_file}", count)


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
        counters: dict[str, TokenCounter] = {}
        members = []
        for member in config.generation.pool:
            spec = config.models[member.model]
            counter = _counter_for(Path(config.model_location(member.model)), counters)
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


def _counter_for(location: Path, known: dict[str, TokenCounter]) -> TokenCounter:
    """The model folder's tokenizer if it has one (loaded once per file), else the estimate."""
    tokenizer_file = location / "tokenizer.json"
    if not tokenizer_file.is_file():
        return BYTE_ESTIMATE
    key = str(tokenizer_file.resolve())
    if key not in known:
        known[key] = tokenizer_counter(tokenizer_file) or BYTE_ESTIMATE
    return known[key]
