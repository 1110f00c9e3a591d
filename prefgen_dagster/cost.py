"""What a batch will cost before it runs: LLM calls and tokens per stage (pure).

Request counts come from the real plans (the same pool draw and ids the run will use), made
once per batch (`plan_batch`) a slice at a time and summed up for both the estimate and the
context warnings (`prompt_fit.py`). Tokens are counted with each model's counter
(`llm.tokens`, the one ingest uses) for text we have, and at `max_tokens` for text not
written yet, so completion figures are upper bounds. Rewrite and judge prompts are counted
in parts (the prompt around empty texts once, each inserted text on its own, `SEAM_TOKENS`
more per insertion), so theirs are close upper bounds too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.evol_quality.prompt import evol_messages
from prefgen_dagster.generation.plan import plan_completions
from prefgen_dagster.ids import stable_hash
from prefgen_dagster.judge import plan as judge_plan
from prefgen_dagster.judge.canaries import Canary, canary_sample
from prefgen_dagster.llm.plan import Planned
from prefgen_dagster.llm.tokens import (
    SEAM_TOKENS,
    TokenCounters,
    planned_prompt_tokens,
    prompts_tokens,
)
from prefgen_dagster.stages import EVOL_QUALITY, GENERATION, JUDGE
from prefgen_dagster.text.conversation import prompt_text

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

    evolution: list[int]  # one per rewritten pooled completion: its rewrite's prompt
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

    key: str  # `instructions_key` of what was planned
    config: PipelineConfig
    generation: Requests
    judging: Requests  # prompts with each text at the longest it may be
    pool_calls: list[str]  # the generation requests' call ids
    bounds: PromptBounds
    counters: TokenCounters


def plan_batch(
    instructions: list[dict[str, Any]], config: PipelineConfig, batch_id: str = "estimate"
) -> BatchPlan:
    """Plan the batch's generation and judging (with stand-in texts) and size its prompts,
    `PLAN_SLICE` instructions (distinct, as ingest accepts them) at a time: each slice's
    requests are planned, summed up and dropped. `prefgen run` plans once, for its
    estimate, and hands the plan to the run's check of the prompts' lengths
    (`defs/resources.PrefgenResource.plan`)."""
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
    key = instructions_key(instructions, batch_id)
    return BatchPlan(key, config, generation, judging, pool_calls, bounds, counters)


def instructions_key(instructions: list[dict[str, Any]], batch_id: str) -> str:
    """What a plan is for: the batch's instructions (their ids hash them) and its id."""
    return stable_hash([[row["instruction_id"] for row in instructions], batch_id])


def rewrite_prompts(
    plans: list[Planned],
    instructions: dict[str, dict[str, Any]],
    config: PipelineConfig,
    counters: TokenCounters,
) -> list[int]:
    """Each rewritten completion's rewrite prompt: the prompt around an empty response (the
    same for every completion of an instruction), plus the response at its longest (the
    first round rewrites a completion, later rounds a rewrite)."""
    evol = config.evol_quality
    members = config.evolved_members()
    plans = [p for p in plans if p.row["pool_member"] in members]
    rewritten = list(dict.fromkeys(p.row["instruction_id"] for p in plans))
    counter = counters.for_model(evol.model)
    frame = prompts_tokens(
        [evol_messages("", "", evol.criteria[0], evol.custom_criteria)], counter, config
    )[0]
    instruction_tokens = counter.count([prompt_text(instructions[iid]) for iid in rewritten])
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
    rewrites = min(kept_rounds, evol.num_evolutions)
    members = config.evolved_members()
    candidates: dict[str, int] = {}
    for plan in plans:
        iid = plan.row["instruction_id"]
        texts = (1 if evol.include_original else 0) + (
            rewrites if plan.row["pool_member"] in members else 0
        )
        candidates[iid] = candidates.get(iid, 0) + texts
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
    evol_calls = len(batch.bounds.evolution) * evol.num_evolutions
    evolution = StageCost(
        EVOL_QUALITY.asset,
        evol_calls,
        evol_calls,
        sum(batch.bounds.evolution) * evol.num_evolutions,
        evol_calls * evol.sampling.max_tokens,
    )

    attempts = 1 + (config.judge.max_reasks if config.judge else 0)
    judging = StageCost(
        JUDGE.asset,
        judge.calls,
        judge.calls * attempts,
        judge.prompt_tokens,
        attempts * judge.max_completion_tokens,
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
