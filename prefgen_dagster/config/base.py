"""What every section of the config builds on: strict models, sampling, where a model runs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Unknown keys are errors (a typo never passes silently); values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SamplingParams(Strict):
    """Sampling settings sent with every request of a stage (engine-neutral)."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = Field(256, gt=0)


class ModelSpec(Strict):
    """Where a model runs. `path` is a local directory or a hub name the engine can load."""

    path: str
    backend: Literal["vllm", "openai"] = "vllm"
    # `chat` writes text; `reward` is a sequence classifier with one output (a reward model,
    # e.g. Skywork-Reward or ArmoRM's head) that scores a prompt and answer in one forward
    # pass: only a judge can be one (`judge/modes.py: Reward`).
    kind: Literal["chat", "reward"] = "chat"
    max_model_len: int = 4096
    dtype: str = "auto"
    # vLLM offline only: anything else `vllm.LLM(...)` accepts (enforce_eager, gpu_memory_...).
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)
    # OpenAI-compatible backend only.
    base_urls: list[str] = Field(default_factory=list)
    served_name: str | None = None
    api_key_env: str | None = None
    # The most requests in flight per base URL; fewer while the server answers 429/503
    # (halved on overload, grown back by one per round of answers).
    max_concurrency: int = Field(16, gt=0)
    # Per attempt: seconds to connect, and to get the whole answer. Once a few answers have
    # come back, an attempt is also given up (and retried) when it takes far longer than
    # they did (see `engines/pacing.py`), so a stalled server costs seconds, not minutes.
    connect_timeout_s: float = Field(5.0, gt=0)
    timeout_s: float = Field(60.0, gt=0)
    # Everything one request may take: attempts, backoff and overload waits.
    deadline_s: float = Field(300.0, gt=0)
    # Retries after errors (5xx, timeouts, dropped connections, malformed bodies); overload
    # replies (429, 503) do not use them up, only time.
    max_retries: int = Field(4, ge=0)
    # Several base URLs share the load: each attempt goes to the one with the most room. One
    # whose last `cooldown_after_failures` attempts failed (not counting 429/503) is taken out
    # for `cooldown_s`, then tried with one request; each failed try doubles the cool-down,
    # up to `max_cooldown_s` (see `engines/fleet.py`). A single base URL is never taken out.
    cooldown_after_failures: int = Field(3, gt=0)
    cooldown_s: float = Field(10.0, gt=0)
    max_cooldown_s: float = Field(120.0, gt=0)

    @model_validator(mode="after")
    def _openai_needs_urls(self) -> ModelSpec:
        if self.backend == "openai" and not self.base_urls:
            raise ValueError("an openai backend needs at least one entry in base_urls")
        return self

    @model_validator(mode="after")
    def _cooldown_bounds(self) -> ModelSpec:
        if self.max_cooldown_s < self.cooldown_s:
            raise ValueError("max_cooldown_s must be at least cooldown_s")
        return self
