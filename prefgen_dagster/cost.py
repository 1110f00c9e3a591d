"""What a batch will cost before it runs: LLM calls and tokens per stage (pure).

Request counts come from the real plans (the same pool draw and ids the run will use), made
once per batch (`plan_batch`) and read by both the estimate and the context warnings. Tokens
are counted with each model's counter (`llm.tokens`, the one ingest uses) for text we have,
and at `max_tokens` for text not written yet, so completion figures are upper bounds. Rewrite
and judge prompts are counted in parts (the prompt around empty texts once, each inserted
text on its own, `SEAM_TOKENS` more per insertion), so theirs are close upper bounds too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.evolution.prompt import evol_messages
from prefgen_dagster.generation.plan import plan_completions
from prefgen_dagster.ids import stable_hash
from prefgen_dagster.judging import prompt as ultrafeedback
from prefgen_dagster.judging.canaries import Canary, canary_sample
from prefgen_dagster.judging.plan import judge_groups, judge_prompt_tokens, plan_judging
from prefgen_dagster.llm.plan import Planned
from prefgen_dagster.llm.tokens import (
    SEAM_TOKENS,
    TokenCounters,
    planned_prompt_tokens,
    prompts_tokens,
)
from prefgen_dagster.stages import EVOLUTION, GENERATION, JUDGING


@dataclass(frozen=True)
class StageCost:
    stage: str
    calls: int  # without retries
    max_calls: int  # with every regeneration / re-ask used
    prompt_tokens: int
    max_completion_tokens: int


def longest_text(config: PipelineConfig) -> int:
    """The most tokens a completion or a rewrite may have: what a text not written yet is
    counted as."""
    return max(
        [m.sampling.max_tokens for m in config.generation.pool]
        + [config.evol_quality.sampling.max_tokens]
    )


@dataclass(frozen=True)
class PromptBounds:
    """Prompts in tokens, each text not written yet counted at its `max_tokens`: each rewrite's
    prompt, each judge request's prompt, and each instruction's longest judge request with
    its answer."""

    evolution: list[int]  # one per pooled completion: its rewrite's prompt
    judge_prompts: list[int]  # one per judge request
    judge: dict[str, int]  # instruction id -> its longest judge request, prompt + answer
    candidates: dict[str, int]  # instruction id -> completions the judge sees


@dataclass(frozen=True)
class BatchPlan:
    """A batch's planned requests, made once: what the estimate and the warnings read."""

    config: PipelineConfig
    generation: list[Planned]
    judging: list[Planned]
    bounds: PromptBounds
    counters: TokenCounters


# The last batch planned, by its key (see `plan_batch`).
_last_plan: dict[str, BatchPlan] = {}


def plan_batch(
    instructions: list[dict[str, Any]], config: PipelineConfig, batch_id: str = "estimate"
) -> BatchPlan:
    """Plan the batch's generation and judging (with stand-in texts) and size its prompts.

    `prefgen run` prints the estimate and then, in the same process, the batch's ingest step
    plans it again for its warnings (seconds at 5,000 instructions): the last plan is kept
    and given back for the same instructions (their ids hash their content), config and
    batch."""
    key = stable_hash(
        [[row["instruction_id"] for row in instructions], config.model_dump(mode="json"), batch_id]
    )
    if key not in _last_plan:
        counters = TokenCounters(config)
        plans = plan_completions(instructions, config, batch_id)
        judge_plans = plan_judge_requests(instructions, config, plans)
        bounds = prompt_bounds(instructions, config, plans, judge_plans, counters)
        _last_plan.clear()
        _last_plan[key] = BatchPlan(config, plans, judge_plans, bounds, counters)
    return _last_plan[key]


def prompt_bounds(
    instructions: list[dict[str, Any]],
    config: PipelineConfig,
    plans: list[Planned],
    judge_plans: list[Planned],
    counters: TokenCounters,
) -> PromptBounds:
    evol = config.evol_quality
    by_id = {row["instruction_id"]: row for row in instructions}
    # The rewrite prompt around an empty response (the same for every completion of an
    # instruction), plus the response at its longest (the first round rewrites a
    # completion, later rounds a rewrite).
    rewritten = list(dict.fromkeys(p.row["instruction_id"] for p in plans))
    counter = counters.for_model(evol.model)
    frame = prompts_tokens(
        [evol_messages("", "", evol.criteria[0], evol.custom_criteria)], counter, config
    )[0]
    instruction_tokens = counter.count([by_id[iid]["instruction"] for iid in rewritten])
    rewrite_prompts = {
        iid: frame + size + 2 * SEAM_TOKENS
        for iid, size in zip(rewritten, instruction_tokens, strict=True)
    }
    evolution = [
        rewrite_prompts[p.row["instruction_id"]]
        + max(p.request.sampling.max_tokens, evol.sampling.max_tokens)
        for p in plans
    ]
    # Each text a judge request shows counts as the longest text.
    longest = longest_text(config)
    judge_prompts = [
        size + longest * len(plan.row.completion_ids)
        for plan, size in zip(
            judge_plans, judge_prompt_tokens(judge_plans, by_id, counters, config), strict=True
        )
    ]
    judge: dict[str, int] = {}
    for plan, size in zip(judge_plans, judge_prompts, strict=True):
        iid = plan.row.instruction_id
        judge[iid] = max(judge.get(iid, 0), size + plan.request.sampling.max_tokens)
    return PromptBounds(evolution, judge_prompts, judge, _candidates(config, plans))


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


def plan_judge_requests(
    instructions: list[dict[str, Any]], config: PipelineConfig, plans: list[Planned]
) -> list[Planned]:
    """The judge requests the batch will make, each text a short stand-in (`prompt_bounds`
    counts it at the longest a text may be): every candidate, probe and canary group
    (canaries for every sampled instruction and kind, an upper bound: a kind that does not
    apply, or an instruction without a finished completion, gets none)."""
    judge = config.judge
    if judge is None:
        return []
    counts = _candidates(config, plans)
    names = [(iid, f"{iid}:{k}") for iid, count in counts.items() for k in range(count)]
    candidates = [{"completion_id": cid, "instruction_id": iid, "text": cid} for iid, cid in names]
    settings = judge.canaries
    sampled = canary_sample(
        sorted(counts), settings.fraction, settings.min_instructions, settings.seed
    )
    canaries = [
        Canary(f"{iid}:{kind}", iid, kind, "", "", "intact", kind, None, False)
        for iid in sorted(sampled)
        for kind in settings.kinds
    ]
    groups = judge_groups(candidates, canaries, config)
    by_id = {row["instruction_id"]: row for row in instructions}
    return plan_judging(groups, by_id, config, attempt=0)


def estimate(batch: BatchPlan) -> list[StageCost]:
    """The cost of generation, evolution and judging for a planned batch."""
    config, plans, judge_plans, bounds = batch.config, batch.generation, batch.judging, batch.bounds
    # Counted here, not in `plan_batch`: the warnings (run at ingest) do not need them.
    gen_prompt = sum(planned_prompt_tokens(plans, batch.counters, config))
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
        sum(bounds.judge_prompts),
        attempts * sum(p.request.sampling.max_tokens for p in judge_plans),
    )
    return [generation, evolution, judging]


def context_warnings(batch: BatchPlan) -> list[str]:
    """Rewrite and judge requests that may not fit their model's context once the answers
    are written (each at its `max_tokens`): a prompt that does not fit fails as
    `PromptTooLong`, an answer that does not fit is cut (a judge's is then stored as NULL).
    Also a judge `max_tokens` set below what a schema-valid answer can take. Ingest already
    rejects instructions too long for the pool itself."""
    config, bounds = batch.config, batch.bounds
    rewrites = [size + config.evol_quality.sampling.max_tokens for size in bounds.evolution]
    checks = [
        ("rewrite", "completions", [config.evol_quality.model], rewrites),
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
