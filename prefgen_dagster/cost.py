"""What a batch will cost before it runs: LLM calls and tokens per stage (pure).

Request counts come from the real plans (the same pool draw and ids the run will use);
tokens are estimated at about four characters per token for text we have, and at
`max_tokens` for text not written yet, so completion figures are upper bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefgen_dagster import planning
from prefgen_dagster.config import PipelineConfig

CHARS_PER_TOKEN = 4
# Template text around a rewrite or judge prompt, in tokens (measured on our templates).
EVOL_TEMPLATE_TOKENS = 150
JUDGE_TEMPLATE_TOKENS = 250


@dataclass(frozen=True)
class StageCost:
    stage: str
    calls: int  # without retries
    max_calls: int  # with every regeneration / re-ask used
    prompt_tokens: int
    max_completion_tokens: int


def _tokens(text: str | None) -> int:
    return len(text or "") // CHARS_PER_TOKEN + 1


@dataclass(frozen=True)
class PromptBounds:
    """The longest prompt each rewrite and each judge request can get (every answer at its
    `max_tokens`), in estimated tokens."""

    evolution: list[int]  # one per pooled completion (the first round's rewrite)
    judge: dict[str, int]  # instruction id -> its judge prompt
    candidates: dict[str, int]  # instruction id -> completions the judge sees


def prompt_bounds(
    instructions: list[dict[str, Any]], config: PipelineConfig, plans: list[planning.Planned]
) -> PromptBounds:
    evol = config.evol_quality
    by_id = {row["instruction_id"]: row for row in instructions}
    evolution = [
        EVOL_TEMPLATE_TOKENS
        + _tokens(by_id[p.row["instruction_id"]]["instruction"])
        + max(p.request.sampling.max_tokens, evol.sampling.max_tokens)
        for p in plans
    ]
    candidates: dict[str, int] = {}
    kept_rounds = 1 if evol.keep == "last" else evol.num_evolutions
    per_completion = (1 if evol.include_original else 0) + min(kept_rounds, evol.num_evolutions)
    for plan in plans:
        iid = plan.row["instruction_id"]
        candidates[iid] = candidates.get(iid, 0) + per_completion
    longest = max(
        [m.sampling.max_tokens for m in config.generation.pool] + [evol.sampling.max_tokens]
    )
    judge = {
        iid: JUDGE_TEMPLATE_TOKENS + _tokens(by_id[iid]["instruction"]) + count * longest
        for iid, count in candidates.items()
    }
    return PromptBounds(evolution, judge, candidates)


def estimate(
    instructions: list[dict[str, Any]], config: PipelineConfig, batch_id: str = "estimate"
) -> list[StageCost]:
    """The cost of generation, evolution and judging for these accepted instructions."""
    plans = planning.plan_completions(instructions, config, batch_id)
    bounds = prompt_bounds(instructions, config, plans)
    gen_prompt = sum(sum(_tokens(m["content"]) for m in p.request.messages) for p in plans)
    gen_completion = sum(p.request.sampling.max_tokens for p in plans)
    regenerations = config.generation.diversity.max_regenerations
    generation = StageCost(
        "pooled_completions",
        len(plans),
        len(plans) * (1 + regenerations),
        gen_prompt * (1 + regenerations),
        gen_completion * (1 + regenerations),
    )

    evol = config.evol_quality
    evol_calls = len(plans) * evol.num_evolutions
    evolution = StageCost(
        "evolved_completions",
        evol_calls,
        evol_calls,
        sum(bounds.evolution) * evol.num_evolutions,
        evol_calls * evol.sampling.max_tokens,
    )

    judge = config.judge
    per_request = len(judge.models) * len(judge.aspects) * len(judge.orders)
    judge_calls = per_request * len(bounds.candidates)
    judging = StageCost(
        "ratings",
        judge_calls,
        judge_calls * (1 + judge.max_reasks),
        per_request * sum(bounds.judge.values()),
        judge_calls * (1 + judge.max_reasks) * judge.sampling.max_tokens,
    )
    return [generation, evolution, judging]


def context_warnings(
    instructions: list[dict[str, Any]], config: PipelineConfig, batch_id: str = "estimate"
) -> list[str]:
    """Rewrite and judge prompts that may not fit their model's context once the answers
    are written (each at its `max_tokens`): such requests would fail as `PromptTooLong`.
    Ingest already rejects instructions too long for the pool itself."""
    plans = planning.plan_completions(instructions, config, batch_id)
    bounds = prompt_bounds(instructions, config, plans)
    checks = [
        ("rewrite", "completions", [config.evol_quality.model], bounds.evolution),
        ("judge", "instructions", config.judge.models, list(bounds.judge.values())),
    ]
    warnings = []
    for what, unit, models, sizes in checks:
        for name in dict.fromkeys(models):
            limit = config.models[name].max_model_len
            over = [size for size in sizes if size >= limit]
            if over:
                warnings.append(
                    f"warning: {len(over)} of {len(sizes)} {unit} may give {what} prompts "
                    f"longer than {name!r}'s max_model_len {limit} (up to about {max(over)} "
                    "tokens when every answer uses its max_tokens); those requests would fail "
                    "as PromptTooLong. Raise max_model_len, or lower max_tokens or the number "
                    "of completions."
                )
    return warnings


def format_estimate(costs: list[StageCost]) -> str:
    lines = [f"{'stage':<22}{'calls':>8}{'max calls':>11}{'prompt tok':>13}{'max compl. tok':>16}"]
    for cost in costs:
        lines.append(
            f"{cost.stage:<22}{cost.calls:>8}{cost.max_calls:>11}"
            f"{cost.prompt_tokens:>13}{cost.max_completion_tokens:>16}"
        )
    total_calls = sum(c.calls for c in costs)
    total_tokens = sum(c.prompt_tokens + c.max_completion_tokens for c in costs)
    lines.append(
        f"{'total':<22}{total_calls:>8}{'':>11}{'':>13}{total_tokens:>16} (all tokens, at most)"
    )
    return "\n".join(lines)
