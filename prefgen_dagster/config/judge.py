"""`judge:` the judging panel, its mode, canaries and position probe."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from prefgen_dagster.config.base import SamplingParams, Strict

JUDGE_ASPECTS = ("overall", "helpfulness", "honesty", "instruction_following", "truthfulness")
JUDGE_ORDERS = ("original", "reversed", "rotated")
# What the config needs of each judge mode (what the modes do is `judge/modes.py`, a test
# ties the two): None where the mode shows a group's texts in each of `judge.orders`, else why
# it takes none.
MODE_ORDERS: dict[str, str | None] = {
    "listwise": None,
    "pointwise": "shows one candidate per request",
    "pairwise": "always asks both orders",
    "reward": "scores one candidate per request",
}
JudgeModeName = Literal[tuple(MODE_ORDERS)]
CANARY_KINDS = ("truncated", "shuffled", "other_answer", "repetition", "weaker_model")
CanaryKind = Literal[CANARY_KINDS]


class JudgeSampling(SamplingParams):
    """The judge's sampling. `max_tokens` unset: each request gets the most tokens an answer
    that fits the JSON schema can take (see `judge.modes.JudgeMode.token_bound`), so a
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
    # per request; pairwise: every two candidates, A vs B, in both orders; reward: every
    # judge is a reward model (`kind: reward`), one candidate per request. A reward model in
    # a panel of another mode scores in reward mode all the same.
    mode: JudgeModeName = "listwise"
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
        why_not = MODE_ORDERS[self.mode]
        if why_not and self.orders != ["original"]:
            ordered = " and ".join(mode for mode, why in MODE_ORDERS.items() if why is None)
            raise ValueError(
                f"judge.orders applies to {ordered} judging only; {self.mode} judging {why_not}"
            )
        return self

    def probes_position(self) -> bool:
        """Whether some instructions are judged again in reversed order to measure position
        bias: a mode that shows texts in `orders` (listwise), without `reversed` among them."""
        shows_orders = MODE_ORDERS[self.mode] is None
        return shows_orders and "reversed" not in self.orders and self.position_probe > 0
