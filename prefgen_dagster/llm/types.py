"""What every engine takes and gives back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from prefgen_dagster.config.base import SamplingParams
from prefgen_dagster.ids import stable_hash


@dataclass(frozen=True)
class LLMRequest:
    """One chat request. `model` is the model's identity (its path or served name)."""

    model: str
    messages: list[dict[str, str]]
    sampling: SamplingParams
    seed: int
    json_schema: dict[str, Any] | None = None

    @cached_property
    def call_id(self) -> str:
        """The cache key: the same request made anywhere gives the same id (hashed once per
        request: a stage reads it several times, and a judge prompt is kilobytes long)."""
        return stable_hash(
            {
                "model": self.model,
                "messages": self.messages,
                "sampling": self.sampling.model_dump(mode="json"),
                "seed": self.seed,
                "schema": self.json_schema,
            }
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": self.messages,
            "sampling": self.sampling.model_dump(mode="json"),
            "seed": self.seed,
            "json_schema": self.json_schema,
        }


@dataclass
class LLMResult:
    text: str | None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float = 0.0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# Called by an engine with (index in the requests, result) as each answer arrives, so that
# the runner can save it before the rest are done.
OnResult = Callable[[int, "LLMResult"], None]


class Engine(Protocol):
    def generate(
        self, requests: Sequence[LLMRequest], on_result: OnResult | None = None
    ) -> list[LLMResult]:
        """Results in the order of `requests`; failures carry `error` instead of raising.
        Each result is also passed to `on_result` as soon as it is known."""
        ...

    def close(self) -> None: ...
