"""What a batch will cost before it runs: LLM calls and tokens per stage (pure).

Request counts come from the real plans (the same pool draw and ids the run will use), made
once per batch (`plan_batch`) a slice at a time and summed up for both the estimate and the
context warnings. Tokens are counted with each model's counter (`llm.tokens`, the one ingest
uses) for text we have, and at `max_tokens` for text not written yet, so completion figures
are upper bounds. Rewrite and judge prompts are counted in parts (the prompt around empty
texts once, each inserted text on its own, `SEAM_TOKENS` more per insertion), so theirs are
close upper bounds too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.evolution.prompt import evol_messages
from prefgen_dagster.generation.plan import plan_completions
from prefgen_dagster.ids import stable_hash
from prefgen_dagster.judging import plan as judge_plan
from prefgen_dagster.judging import prompt as ultrafeedback
from prefgen_dagster.judging.canaries import Canary, canary_sample
from prefgen_dagster.llm.plan import Planned
from prefgen_dagster.llm.tokens import (
    SEAM_TOKENS,
    TokenCounters,
    planned_prompt_tokens,
    prompts_tokens,
)
from prefgen_dagster.stages import EVOLUTION, GENERATION, JUDGING

# Instructions planned at a time: a slice's plans are summed up, then dropped. A whole batch's
# plans took ~1.1 GB at 100,000 instructions (400,000 completion and 100,000 judge requests).
PLAN_SLICE = 1000


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
    prompt, and each instruction's longest judge request with its answer."""

    evolution: list[int]  # one per pooled completion: its rewrite's prompt
    judge: dict[str, int]  # instruction id -> its longest judge request, prompt + answer
    candidates: dict[str, int]  # instruction id -> completions the judge sees


@dataclass
class Requests:
    """A stage's planned requests, summed up."""

    calls: int = 0
    prompt_tokens: int = 0
    max_completion_tokens: int = 0

    def add(self, plans: list[Planned], prompt_tokens: int) -> None:
        self.calls += len(plans)
        self.prompt_tokens += prompt_tokens
        self.max_completion_tokens += sum(plan.request.sampling.max_tokens for plan in plans)


@dataclass(frozen=True)
class BatchPlan:
    """A batch's planned requests, summed up once: what the estimate and the warnings read."""

    config: PipelineConfig
    generation: Requests
    judging: Requests  # prompts with each text at the longest it may be
    pool_calls: list[str]  # the generation requests' call ids
    bounds: PromptBounds
    counters: TokenCounters


# The last batch planned, by its key (see `plan_batch`).
_last_plan: dict[str, BatchPlan] = {}


def plan_batch(
    instructions: list[dict[str, Any]], config: PipelineConfig, batch_id: str = "estimate"
) -> BatchPlan:
    """Plan the batch's generation and judging (with stand-in texts) and size its prompts.

    `prefgen run` prints the estimate and then, in the same process, the batch's ingest step
    plans it again for its warnings (seconds at 5,000 instructions): the last plan (its sums)
    is kept and given back for the same instructions (their ids hash them), config and batch."""
    key = stable_hash(
        [[row["instruction_id"] for row in instructions], config.model_dump(mode="json"), batch_id]
    )
    if key not in _last_plan:
        _last_plan.clear()
        _last_plan[key] = _plan(instructions, config, batch_id)
    return _last_plan[key]


def _plan(instructions: list[dict[str, Any]], config: PipelineConfig, batch_id: str) -> BatchPlan:
    """`plan_batch`, `PLAN_SLICE` instructions (distinct, as ingest accepts them) at a time:
    each slice's requests are planned, summed up and dropped."""
    counters = TokenCounters(config)
    by_id = {row["instruction_id"]: row for row in instructions}
    canaried, probed = set[str](), set[str]()
    if config.judge is not None:  # sampled from the whole batch, as the judging stage does
        settings = config.judge.canaries
        canaried = canary_sample(
            sorted(by_id), settings.fraction, settings.min_instructions, settings.seed
        )
        probed = judge_plan.probe_sample(list(by_id), config.judge)
    generation, judging, pool_calls = Requests(), Requests(), list[str]()
    bounds, longest = PromptBounds([], {}, {}), longest_text(config)
    for start in range(0, len(instructions), PLAN_SLICE):
        plans = plan_completions(instructions[start : start + PLAN_SLICE], config, batch_id)
        generation.add(plans, sum(planned_prompt_tokens(plans, counters, config)))
        pool_calls += [plan.request.call_id for plan in plans]
        bounds.evolution.extend(rewrite_prompts(plans, by_id, config, counters))
        counts = _candidates(config, plans)
        bounds.candidates.update(counts)
        groups = stand_in_groups(config, counts, canaried, probed)
        judge_plans = judge_plan.plan_judging(groups, by_id, config, attempt=0)
        # Each text a judge request shows counts as the longest text.
        prompts = judge_plan.judge_prompt_tokens(judge_plans, by_id, counters, config)
        sizes = [
            size + longest * len(plan.row.completion_ids)
            for plan, size in zip(judge_plans, prompts, strict=True)
        ]
        judging.add(judge_plans, sum(sizes))
        for plan, size in zip(judge_plans, sizes, strict=True):
            iid, answer = plan.row.instruction_id, plan.request.sampling.max_tokens
            bounds.judge[iid] = max(bounds.judge.get(iid, 0), size + answer)
    return BatchPlan(config, generation, judging, pool_calls, bounds, counters)


def rewrite_prompts(
    plans: list[Planned],
    instructions: dict[str, dict[str, Any]],
    config: PipelineConfig,
    counters: TokenCounters,
) -> list[int]:
    """Each planned completion's rewrite prompt: the prompt around an empty response (the
    same for every completion of an instruction), plus the response at its longest (the
    first round rewrites a completion, later rounds a rewrite)."""
    evol = config.evol_quality
    rewritten = list(dict.fromkeys(p.row["instruction_id"] for p in plans))
    counter = counters.for_model(evol.model)
    frame = prompts_tokens(
        [evol_messages("", "", evol.criteria[0], evol.custom_criteria)], counter, config
    )[0]
    instruction_tokens = counter.count([instructions[iid]["instruction"] for iid in rewritten])
    sizes = {
        iid: frame + size + 2 * SEAM_TOKENS
        for iid, size in zip(rewritten, instruction_tokens, strict=True)
    }
    return [
        sizes[p.row["instruction_id"]]
        + max(p.request.sampling.max_tokens, evol.sampling.max_tokens)
        for p in plans
    ]


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


def stand_in_groups(
    config: PipelineConfig, counts: dict[str, int], canaried: set[str], probed: set[str]
) -> list[judge_plan.JudgeGroup]:
    """The groups the judge will compare for the instructions of `counts` (id -> number of
    candidates), each text a short stand-in (counted at the longest a text may be): every
    candidate group, the probes of those in `probed`, and a canary for each of those in
    `canaried` and each kind (an upper bound: a kind that does not apply, or an instruction
    without a finished completion, gets none)."""
    judge = config.judge
    if judge is None:
        return []
    names = [(iid, f"{iid}:{k}") for iid, count in counts.items() for k in range(count)]
    candidates = [{"completion_id": cid, "instruction_id": iid, "text": cid} for iid, cid in names]
    canaries = [
        Canary(f"{iid}:{kind}", iid, kind, "", "", "intact", kind, None, False)
        for iid in sorted(canaried & counts.keys())
        for kind in judge.canaries.kinds
    ]
    return judge_plan.judge_groups(candidates, canaries, config, probed)


def estimate(batch: BatchPlan) -> list[StageCost]:
    """The cost of generation, evolution and judging for a planned batch."""
    config, pool, judge = batch.config, batch.generation, batch.judging
    regenerations = config.generation.diversity.max_regenerations
    generation = StageCost(
        GENERATION.asset,
        pool.calls,
        pool.calls * (1 + regenerations),
        pool.prompt_tokens * (1 + regenerations),
        pool.max_completion_tokens * (1 + regenerations),
    )

    evol = config.evol_quality
    evol_calls = pool.calls * evol.num_evolutions
    evolution = StageCost(
        EVOLUTION.asset,
        evol_calls,
        evol_calls,
        sum(batch.bounds.evolution) * evol.num_evolutions,
        evol_calls * evol.sampling.max_tokens,
    )

    attempts = 1 + (config.judge.max_reasks if config.judge else 0)
    judging = StageCost(
        JUDGING.asset,
        judge.calls,
        judge.calls * attempts,
        judge.prompt_tokens,
        attempts * judge.max_completion_tokens,
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
    warnings.extend(_judge_budget_warnings(config, bounds, batch.counters))
    return warnings


def _judge_budget_warnings(
    config: PipelineConfig, bounds: PromptBounds, counters: TokenCounters
) -> list[str]:
    """A judge answer that fits the schema but not a set `max_tokens` is cut and stored as
    NULL. An answer takes its JSON as each judge's tokenizer counts it (`answer_skeleton`)
    plus, when rationales are asked for, each rationale at one token per character; without
    them it is the ratings JSON alone."""
    judge = config.judge
    if judge is None or judge.sampling.max_tokens is None or not bounds.candidates:
        return []
    count = max(bounds.candidates.values())
    skeletons = [
        ultrafeedback.answer_skeleton(judge.mode, count, aspect, judge.with_rationale)
        for aspect in judge.aspects
    ]
    need = max(max(counters.for_model(name).count(skeletons)) for name in judge.models)
    if judge.with_rationale:
        need += ultrafeedback.answer_entries(judge.mode, count) * judge.rationale_max_chars
    if judge.sampling.max_tokens >= need:
        return []
    what, advice = (
        (
            f"rationales of up to {judge.rationale_max_chars} characters at one token per "
            "character",
            ", lower rationale_max_chars, or set with_rationale: false",
        )
        if judge.with_rationale
        else ("ratings only: with_rationale is false", "")
    )
    return [
        f"warning: judge.sampling.max_tokens is {judge.sampling.max_tokens}, but a valid "
        f"{judge.mode} answer can take up to {need} tokens ({count} texts, {what}); a longer "
        "answer is cut and stored as a NULL rating. Leave max_tokens unset to size it from "
        f"the schema{advice}."
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
