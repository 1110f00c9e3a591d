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


def estimate(
    instructions: list[dict[str, Any]], config: PipelineConfig, batch_id: str = "estimate"
) -> list[StageCost]:
    """The cost of generation, evolution and judging for these accepted instructions."""
    plans = planning.plan_completions(instructions, config, batch_id)
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
    by_id = {row["instruction_id"]: row for row in instructions}
    evol_calls = len(plans) * evol.num_evolutions
    per_answer = {p.row["completion_id"]: p.request.sampling.max_tokens for p in plans}
    evol_prompt = (
        sum(
            EVOL_TEMPLATE_TOKENS
            + _tokens(by_id[p.row["instruction_id"]]["instruction"])
            + max(per_answer[p.row["completion_id"]], evol.sampling.max_tokens)
            for p in plans
        )
        * evol.num_evolutions
    )
    evolution = StageCost(
        "evolved_completions",
        evol_calls,
        evol_calls,
        evol_prompt,
        evol_calls * evol.sampling.max_tokens,
    )

    judge = config.judge
    per_request = len(judge.models) * len(judge.aspects) * len(judge.orders)
    candidates: dict[str, int] = {}
    for plan in plans:
        iid = plan.row["instruction_id"]
        kept_rounds = 1 if evol.keep == "last" else evol.num_evolutions
        originals = 1 if evol.include_original else 0
        candidates[iid] = candidates.get(iid, 0) + originals + min(kept_rounds, evol.num_evolutions)
    judge_calls = per_request * len(candidates)
    longest = max(
        [m.sampling.max_tokens for m in config.generation.pool] + [evol.sampling.max_tokens]
    )
    judge_prompt = per_request * sum(
        JUDGE_TEMPLATE_TOKENS + _tokens(by_id[iid]["instruction"]) + count * longest
        for iid, count in candidates.items()
    )
    judging = StageCost(
        "ratings",
        judge_calls,
        judge_calls * (1 + judge.max_reasks),
        judge_prompt,
        judge_calls * (1 + judge.max_reasks) * judge.sampling.max_tokens,
    )
    return [generation, evolution, judging]


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
