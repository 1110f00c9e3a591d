"""What a batch will cost before it runs: LLM calls and tokens per stage (pure).

Request counts come from the real plans (the same pool draw and ids the run will use);
tokens are estimated at about four characters per token for text we have, and at
`max_tokens` for text not written yet, so completion figures are upper bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.generation.plan import plan_completions
from prefgen_dagster.judging import prompt as ultrafeedback
from prefgen_dagster.judging.canaries import Canary, canary_sample
from prefgen_dagster.judging.plan import judge_groups, plan_judging
from prefgen_dagster.llm.plan import Planned
from prefgen_dagster.stages import EVOLUTION, GENERATION, JUDGING

CHARS_PER_TOKEN = 4
# Template text around a rewrite prompt, in tokens (measured on our template).
EVOL_TEMPLATE_TOKENS = 150


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
    """The longest request each rewrite and each judge request can get (every answer at its
    `max_tokens`), in estimated tokens."""

    evolution: list[int]  # one per pooled completion (the first round's rewrite)
    judge: dict[str, int]  # instruction id -> its longest judge request, prompt + answer
    candidates: dict[str, int]  # instruction id -> completions the judge sees


def prompt_bounds(
    instructions: list[dict[str, Any]],
    config: PipelineConfig,
    plans: list[Planned],
    judge_plans: list[Planned],
) -> PromptBounds:
    evol = config.evol_quality
    by_id = {row["instruction_id"]: row for row in instructions}
    evolution = [
        EVOL_TEMPLATE_TOKENS
        + _tokens(by_id[p.row["instruction_id"]]["instruction"])
        + max(p.request.sampling.max_tokens, evol.sampling.max_tokens)
        for p in plans
    ]
    judge: dict[str, int] = {}
    for plan in judge_plans:
        size = _prompt_tokens(plan) + plan.request.sampling.max_tokens
        iid = plan.row["instruction_id"]
        judge[iid] = max(judge.get(iid, 0), size)
    return PromptBounds(evolution, judge, _candidates(config, plans))


def _candidates(config: PipelineConfig, plans: list[Planned]) -> dict[str, int]:
    """Instruction id -> the number of texts its judge request(s) compare."""
    evol = config.evol_quality
    kept_rounds = 1 if evol.keep == "last" else evol.num_evolutions
    per_completion = (1 if evol.include_original else 0) + min(kept_rounds, evol.num_evolutions)
    candidates: dict[str, int] = {}
    for plan in plans:
        iid = plan.row["instruction_id"]
        candidates[iid] = candidates.get(iid, 0) + per_completion
    return candidates


def _prompt_tokens(plan: Planned) -> int:
    return sum(_tokens(message["content"]) for message in plan.request.messages)


def plan_judge_requests(
    instructions: list[dict[str, Any]], config: PipelineConfig, plans: list[Planned]
) -> list[Planned]:
    """The judge requests the batch will make, with stand-in texts of the longest length a
    completion or rewrite may have: every candidate, probe and canary group (canaries for
    every sampled instruction and kind, an upper bound: a kind that does not apply, or an
    instruction without a finished completion, gets none)."""
    judge = config.judge
    if judge is None:
        return []
    evol = config.evol_quality
    longest = max(
        [m.sampling.max_tokens for m in config.generation.pool] + [evol.sampling.max_tokens]
    )

    def stand_in(name: str) -> str:
        return f"{name} " + "x" * (longest * CHARS_PER_TOKEN)

    counts = _candidates(config, plans)
    candidates = [
        {"completion_id": f"{iid}:{k}", "instruction_id": iid, "text": stand_in(f"{iid}:{k}")}
        for iid, count in counts.items()
        for k in range(count)
    ]
    settings = judge.canaries
    sampled = canary_sample(
        sorted(counts), settings.fraction, settings.min_instructions, settings.seed
    )
    canaries = [
        Canary(f"{iid}:{kind}", iid, kind, "", "", stand_in("intact"), stand_in(kind), None, False)
        for iid in sorted(sampled)
        for kind in settings.kinds
    ]
    groups = judge_groups(candidates, canaries, config)
    by_id = {row["instruction_id"]: row for row in instructions}
    return plan_judging(groups, by_id, config, attempt=0)


def estimate(
    instructions: list[dict[str, Any]], config: PipelineConfig, batch_id: str = "estimate"
) -> list[StageCost]:
    """The cost of generation, evolution and judging for these accepted instructions."""
    plans = plan_completions(instructions, config, batch_id)
    judge_plans = plan_judge_requests(instructions, config, plans)
    bounds = prompt_bounds(instructions, config, plans, judge_plans)
    gen_prompt = sum(_prompt_tokens(p) for p in plans)
    gen_completion = sum(p.request.sampling.max_tokens for p in plans)
    regenerations = config.generation.diversity.max_regenerations
    generation = StageCost(
        GENERATION.asset,
        len(plans),
        len(plans) * (1 + regenerations),
        gen_prompt * (1 + regenerations),
        gen_completion * (1 + regenerations),
    )

    evol = config.evol_quality
    evol_calls = len(plans) * evol.num_evolutions
    evolution = StageCost(
        EVOLUTION.asset,
        evol_calls,
        evol_calls,
        sum(bounds.evolution) * evol.num_evolutions,
        evol_calls * evol.sampling.max_tokens,
    )

    attempts = 1 + (config.judge.max_reasks if config.judge else 0)
    judging = StageCost(
        JUDGING.asset,
        len(judge_plans),
        len(judge_plans) * attempts,
        sum(_prompt_tokens(p) for p in judge_plans),
        attempts * sum(p.request.sampling.max_tokens for p in judge_plans),
    )
    return [generation, evolution, judging]


def context_warnings(
    instructions: list[dict[str, Any]], config: PipelineConfig, batch_id: str = "estimate"
) -> list[str]:
    """Rewrite and judge requests that may not fit their model's context once the answers
    are written (each at its `max_tokens`): a prompt that does not fit fails as
    `PromptTooLong`, an answer that does not fit is cut (a judge's is then stored as NULL).
    Also a judge `max_tokens` set below what a schema-valid answer can take. Ingest already
    rejects instructions too long for the pool itself."""
    plans = plan_completions(instructions, config, batch_id)
    judge_plans = plan_judge_requests(instructions, config, plans)
    bounds = prompt_bounds(instructions, config, plans, judge_plans)
    checks = [
        ("rewrite", "completions", [config.evol_quality.model], bounds.evolution),
        ("judge", "instructions", config.judge_models(), list(bounds.judge.values())),
    ]
    warnings = []
    for what, unit, models, sizes in checks:
        for name in dict.fromkeys(models):
            limit = config.models[name].max_model_len
            over = [size for size in sizes if size >= limit]
            if over:
                warnings.append(
                    f"warning: {len(over)} of {len(sizes)} {unit} may give {what} requests "
                    f"longer than {name!r}'s max_model_len {limit} (up to about {max(over)} "
                    "tokens, prompt and answer, when every text uses its max_tokens); such "
                    "prompts would fail as PromptTooLong, or their answers be cut. Raise "
                    "max_model_len, or lower max_tokens or the number of completions."
                )
    warnings.extend(_judge_budget_warnings(config, bounds))
    return warnings


def _judge_budget_warnings(config: PipelineConfig, bounds: PromptBounds) -> list[str]:
    """A judge answer that fits the schema but not `max_tokens` is cut and stored as NULL."""
    judge = config.judge
    if judge is None or judge.sampling.max_tokens is None or not bounds.candidates:
        return []
    count = max(bounds.candidates.values())
    need = ultrafeedback.answer_token_bound(
        judge.mode, count, judge.rationale_max_chars, judge.with_rationale
    )
    if judge.sampling.max_tokens >= need:
        return []
    return [
        f"warning: judge.sampling.max_tokens is {judge.sampling.max_tokens}, but a valid "
        f"{judge.mode} answer can take up to {need} tokens ({count} texts, rationales of up "
        f"to {judge.rationale_max_chars} characters at one token per character); a longer "
        "answer is cut and stored as a NULL rating. Leave max_tokens unset to size it from "
        "the schema, or lower rationale_max_chars."
    ]


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
