"""The cost estimate counts exactly the requests the run will plan."""

from __future__ import annotations

from collections.abc import Callable

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.cost import context_warnings, estimate, format_estimate
from prefgen_dagster.ingest import instruction_id

QUESTIONS = ["Explain tides.", "Name three primes.", "What is a hash table?"]
ROWS = [
    {"instruction_id": instruction_id(q, None), "instruction": q, "system_prompt": None}
    for q in QUESTIONS
]


def by_stage(config: PipelineConfig) -> dict[str, tuple[int, int]]:
    return {c.stage: (c.calls, c.max_calls) for c in estimate(ROWS, config)}


def test_calls_follow_the_pool_evolutions_and_judge_panel(
    config: PipelineConfig, make_config: Callable[..., PipelineConfig]
) -> None:
    # Base config: (2 + 3) completions per instruction, one rewrite each, one judge request
    # per instruction; diversity regenerations (2) and judge re-asks (1) bound the maximum.
    assert by_stage(config) == {
        "pooled_completions": (15, 45),
        "evolved_completions": (15, 15),
        "ratings": (3, 6),
    }
    panel = make_config(
        judge={
            "models": ["judge-m", "gen-b"],
            "aspects": ["helpfulness", "honesty", "truthfulness"],
            "orders": ["original", "reversed"],
            "max_reasks": 0,
        },
        evol_quality={"model": "gen-a", "num_evolutions": 2},
    )
    assert by_stage(panel) == {
        "pooled_completions": (15, 45),
        "evolved_completions": (30, 30),
        "ratings": (3 * 2 * 3 * 2, 36),
    }


def test_completion_tokens_are_bounded_by_max_tokens(config: PipelineConfig) -> None:
    generation, evolution, judging = estimate(ROWS, config)
    assert generation.max_completion_tokens == 15 * 48 * 3
    assert evolution.max_completion_tokens == 15 * config.evol_quality.sampling.max_tokens
    assert judging.max_completion_tokens == 6 * config.judge.sampling.max_tokens
    assert judging.prompt_tokens > 3 * 6 * 48  # six candidates of up to 48 tokens each
    table = format_estimate([generation, evolution, judging])
    assert table.splitlines()[1].split()[:3] == ["pooled_completions", "15", "45"]


def test_judge_prompts_that_may_outgrow_the_judges_context_are_warned_about(
    make_config: Callable[..., PipelineConfig],
) -> None:
    long_question = "Describe every step. " * 100  # about 530 tokens by the estimate
    rows = [*ROWS, {"instruction_id": "long", "instruction": long_question, "system_prompt": None}]
    roomy = make_config()
    assert context_warnings(rows, roomy) == []

    # Each instruction's judge prompt holds 10 candidates of up to 256 tokens (the rewrites'
    # max_tokens): about 2,800 tokens for the short questions, about 3,300 for the long one.
    models = roomy.model_dump(mode="json")["models"]
    models["judge-m"]["max_model_len"] = 3072
    [warning] = context_warnings(rows, make_config(models=models))
    assert warning.startswith("warning: 1 of 4 instructions may give judge prompts longer than ")
    assert "'judge-m''s max_model_len 3072" in warning and "PromptTooLong" in warning

    models["judge-m"]["max_model_len"] = 2048
    [warning] = context_warnings(rows, make_config(models=models))
    assert warning.startswith("warning: 4 of 4 instructions")
