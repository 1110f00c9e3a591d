"""Whether a batch's later prompts fit their models: the rewrite and judge requests a plan
(`cost.plan_batch`) says may outgrow a model's context once the answers are written, and a
judge `max_tokens` below what a valid answer takes. `prefgen estimate` prints these, and the
non-blocking check `later_prompts_fit` reports them on each batch (pure)."""

from __future__ import annotations

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.cost import BatchPlan, PromptBounds
from prefgen_dagster.judge.modes import MODES
from prefgen_dagster.llm.tokens import TokenCounters


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
    NULL. An answer takes its JSON as each judge's tokenizer counts it (`JudgeMode.skeleton`)
    plus, when rationales are asked for, each rationale at one token per character; without
    them it is the ratings JSON alone."""
    judge = config.judge
    if judge is None or judge.sampling.max_tokens is None or not bounds.candidates:
        return []
    # A reward model writes nothing: only the chat judges' answers can be cut.
    writers = [name for name in judge.models if config.models[name].kind == "chat"]
    if not writers:
        return []
    count = max(bounds.candidates.values())
    mode = MODES[judge.mode]
    skeletons = [mode.skeleton(count, aspect, judge.with_rationale) for aspect in judge.aspects]
    need = max(max(counters.for_model(name).count(skeletons)) for name in writers)
    if judge.with_rationale:
        need += mode.entries(count) * judge.rationale_max_chars
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
