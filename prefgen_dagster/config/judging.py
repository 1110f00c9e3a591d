"""`judge:` the judging panel, its mode, canaries and position probe."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from prefgen_dagster.config.base import SamplingParams, Strict

JUDGE_ASPECTS = ("overall", "helpfulness", "honesty", "instruction_following", "truthfulness")
JUDGE_ORDERS = ("original", "reversed", "rotated")
JudgeMode = Literal["listwise", "pointwise", "pairwise"]
CANARY_KINDS = ("truncated", "shuffled", "other_answer", "repetition", "weaker_model")
CanaryKind = Literal[CANARY_KINDS]


class JudgeSampling(SamplingParams):
    """The judge's sampling. `max_tokens` unset: each request gets the most tokens an answer
    that fits the JSON schema can take (see `judging.modes.JudgeMode.token_bound`), so a
    schema-valid answer is never cut off."""

    temperature: float = 0.0
    max_tokens: int | None = Field(None, gt=0)  # type: ignore[assignment]


class CanaryConfig(Strict):
    """Known-order comparisons built from each batch, judged like real candidates and never
    exported: a real completion against a corrupted copy of it."""

    kinds: list[CanaryKind] = Field(default_factory=lambda: list(CANARY_KINDS))
    # Share of a batch's instructions that get canaries (all of them when the batch has no
    # more than `min_instructions`).
    fraction: float = Field(0.25, ge=0, le=1)
    min_instructions: int = Field(10, ge=0)
    # Pool models whose finished completions may be the intact side (default: every one).
    source_models: list[str] = Field(default_factory=list)
    seed: int = 0


class JudgeConfig(Strict):
    models: list[str] = Field(min_length=1)
    # listwise: all of an instruction's candidates in one request; pointwise: one candidate
    # per request; pairwise: every two candidates, A vs B, in both orders.
    mode: JudgeMode = "listwise"
    aspects: list[Literal[JUDGE_ASPECTS]] = Field(default_factory=lambda: ["overall"])
    # Listwise only: orders in which each instruction's completions are shown.
    orders: list[Literal[JUDGE_ORDERS]] = Field(default_factory=lambda: ["original"])
    # Listwise without `reversed` among the orders: this share of instructions is judged
    # again in reversed order to measure position bias (those ratings are not used for pairs).
    position_probe: float = Field(0.25, ge=0, le=1)
    canaries: CanaryConfig = CanaryConfig()
    with_rationale: bool = True
    rationale_max_chars: int = Field(300, gt=0)
    max_reasks: int = Field(1, ge=0)
    seed: int = 0
    sampling: JudgeSampling = JudgeSampling()

    @model_validator(mode="before")
    @classmethod
    def _single_model_shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and "model" in data:
            data = {**data, "models": [data["model"]]}
            del data["model"]
        return data

    @model_validator(mode="after")
    def _no_repeats(self) -> JudgeConfig:
        for name in ("models", "aspects", "orders"):
            values = getattr(self, name)
            if len(set(values)) != len(values) or not values:
                raise ValueError(f"judge.{name} must be a non-empty list without repeats")
        if self.mode != "listwise" and self.orders != ["original"]:
            raise ValueError(
                f"judge.orders applies to listwise judging only; {self.mode} judging "
                + (
                    "shows one candidate per request"
                    if self.mode == "pointwise"
                    else "always asks both orders"
                )
            )
        return self

    def probes_position(self) -> bool:
        """Whether some instructions are judged again in reversed order to measure position
        bias: listwise judging whose own orders do not already include `reversed`."""
        return self.mode == "listwise" and "reversed" not in self.orders and self.position_probe > 0
