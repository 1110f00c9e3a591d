"""The cost estimate counts exactly the requests the run will plan."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import pytest

from prefgen_dagster import cost
from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.cost import estimate, format_estimate, instructions_key, plan_batch
from prefgen_dagster.input.validate import instruction_id
from prefgen_dagster.judge import plan as judge_plan
from prefgen_dagster.judge.modes import MODES
from prefgen_dagster.llm.plan import Planned
from prefgen_dagster.prompt_fit import context_warnings
from prefgen_dagster.storage.store import Storage
from tests.unit.llm.test_reuse import Scripted, add_instructions, run_stages

QUESTIONS = ["Explain tides.", "Name three primes.", "What is a hash table?"]
ROWS = [
    {"instruction_id": instruction_id(q, None), "instruction": q, "system_prompt": None}
    for q in QUESTIONS
]


def by_stage(
    config: PipelineConfig, rows: list[dict[str, Any]] = ROWS
) -> dict[str, tuple[int, int]]:
    return {c.stage: (c.calls, c.max_calls) for c in estimate(plan_batch(rows, config))}


def test_calls_follow_the_pool_evolutions_and_judge_panel(
    config: PipelineConfig, make_config: Callable[..., PipelineConfig]
) -> None:
    # Base config: (2 + 3) completions per instruction, one rewrite each. The judge: one
    # request per instruction, a reversed look at a quarter of them (1 of 3, rounded up) for
    # position bias, and one canary per instruction and kind (5 kinds; every instruction,
    # since the batch is smaller than canaries.min_instructions). Diversity regenerations (2)
    # and judge re-asks (1) bound the maximum.
    assert by_stage(config) == {
        "completions": (15, 45),
        "evolved_completions": (15, 15),
        "ratings": (3 + 1 + 3 * 5, 38),
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
    # With `reversed` among the orders there is no probe; canaries get every order too.
    assert by_stage(panel) == {
        "completions": (15, 45),
        "evolved_completions": (30, 30),
        "ratings": ((3 + 3 * 5) * 2 * 3 * 2, 216),
    }


@pytest.mark.parametrize(
    ("mode", "label", "probe", "canary"),
    [
        ("listwise", 1, 1, 1),  # per instruction; the probe: one of the three instructions
        ("pointwise", 10, 0, 2),  # one request per text
        ("pairwise", 10 * 9, 0, 2),  # every two texts, both orders
    ],
)
def test_judge_calls_by_mode(
    make_config: Callable[..., PipelineConfig], mode: str, label: int, probe: int, canary: int
) -> None:
    config = make_config(judge={"model": "judge-m", "mode": mode, "max_reasks": 0})
    assert by_stage(config)["ratings"][0] == 3 * label + probe + 3 * 5 * canary


def test_completion_tokens_are_bounded_by_max_tokens(config: PipelineConfig) -> None:
    generation, evolution, judging = estimate(plan_batch(ROWS, config))
    assert generation.max_completion_tokens == 15 * 48 * 3
    assert evolution.max_completion_tokens == 15 * config.evol_quality.sampling.max_tokens
    # The judge's max_tokens is sized from its schema: 10 texts per candidate request (and
    # probe), 2 per canary; every request may be asked twice (max_reasks 1).
    ten, two = (MODES["listwise"].token_bound(n, 60) for n in (10, 2))
    assert judging.max_completion_tokens == 2 * ((3 + 1) * ten + 15 * two)
    assert judging.prompt_tokens > 3 * 6 * 48  # six candidates of up to 48 tokens each
    table = format_estimate([generation, evolution, judging])
    assert table.splitlines()[1].split()[:3] == ["completions", "15", "45"]


def test_judge_prompts_that_may_outgrow_the_judges_context_are_warned_about(
    make_config: Callable[..., PipelineConfig],
) -> None:
    long_question = "Describe every step. " * 100  # about 1,050 tokens by the estimate
    rows = [*ROWS, {"instruction_id": "long", "instruction": long_question, "system_prompt": None}]
    models = make_config().model_dump(mode="json")["models"]
    models["judge-m"]["max_model_len"] = 8192
    assert context_warnings(plan_batch(rows, make_config(models=models))) == []

    # Each instruction's judge request holds 10 candidates of up to 256 tokens (the rewrites'
    # max_tokens) and an answer of up to 768 tokens (10 rationales of 60 characters at one
    # token per character): about 3,650 tokens for the short questions, 4,140 for the long one.
    models["judge-m"]["max_model_len"] = 4096
    [warning] = context_warnings(plan_batch(rows, make_config(models=models)))
    assert warning.startswith("warning: 1 of 4 instructions may give judge requests longer than ")
    assert "'judge-m''s max_model_len 4096" in warning and "PromptTooLong" in warning

    models["judge-m"]["max_model_len"] = 2048
    [warning] = context_warnings(plan_batch(rows, make_config(models=models)))
    assert warning.startswith("warning: 4 of 4 instructions")


def test_a_judge_max_tokens_below_the_schema_bound_is_warned_about(
    make_config: Callable[..., PipelineConfig],
) -> None:
    # 10 candidates: their JSON with empty rationales is 293 bytes, 147 tokens by the byte
    # estimate (judge-m has no tokenizer here), plus 10 rationales of 60 characters.
    skeleton = MODES["listwise"].skeleton(10, "overall", with_rationale=True)
    assert len(skeleton) == 293
    need = 147 + 10 * 60
    judge = {"model": "judge-m", "rationale_max_chars": 60, "sampling": {"max_tokens": need}}
    assert context_warnings(plan_batch(ROWS, make_config(judge=judge))) == []
    judge["sampling"] = {"max_tokens": need - 1}
    [warning] = context_warnings(plan_batch(ROWS, make_config(judge=judge)))
    assert f"max_tokens is {need - 1}, but a valid listwise answer can take up to {need} " in (
        warning
    )
    assert "rationales of up to 60 characters" in warning
    assert "Leave max_tokens unset" in warning


def test_without_rationales_the_judge_needs_only_the_ratings_json(
    make_config: Callable[..., PipelineConfig],
) -> None:
    # `{"ratings":[{"rating":5},...]}` for 10 candidates: 143 bytes, 72 tokens by the byte
    # estimate, far below what answers with rationales need.
    assert len(MODES["listwise"].skeleton(10, "overall", with_rationale=False)) == 143
    judge = {
        "model": "judge-m",
        "with_rationale": False,
        "rationale_max_chars": 60,
        "sampling": {"max_tokens": 72},
    }
    assert context_warnings(plan_batch(ROWS, make_config(judge=judge))) == []
    # The same max_tokens with rationales is too small, and the warning says why.
    [warning] = context_warnings(
        plan_batch(ROWS, make_config(judge={**judge, "with_rationale": True}))
    )
    assert "max_tokens is 72, but a valid listwise answer can take up to 747 tokens" in warning
    assert "rationales of up to 60 characters" in warning
    # One token short of the ratings JSON: warned about, without a word on rationales.
    judge["sampling"] = {"max_tokens": 71}
    [warning] = context_warnings(plan_batch(ROWS, make_config(judge=judge)))
    assert "can take up to 72 tokens (10 texts, ratings only: with_rationale is false)" in warning
    assert "rationale_max_chars" not in warning


def test_a_plan_names_the_instructions_and_batch_it_was_made_for(
    config: PipelineConfig,
) -> None:
    # `prefgen run` hands its estimate's plan to the run, whose check of the prompts'
    # lengths uses it only for the same instructions of the same batch
    # (`defs/resources.PrefgenResource.plan`; tests/unit/test_run_once.py).
    first = plan_batch(ROWS, config, "a.jsonl")
    assert first.key == instructions_key([dict(row) for row in ROWS], "a.jsonl")
    assert first.key != instructions_key(ROWS[:2], "a.jsonl")
    assert first.key != instructions_key(ROWS, "b.jsonl")
    # A plan is made afresh each time (no plan is kept between calls), the same each time.
    again = plan_batch(ROWS, config, "a.jsonl")
    assert again is not first and again.generation == first.generation


def test_a_large_batch_is_planned_a_slice_at_a_time(
    config: PipelineConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's requests are planned a slice of instructions at a time and dropped once
    summed up (all of a 100,000-instruction batch's plans took ~1.1 GB, and the kept plan
    held them for the whole run); the sums are those of the batch planned in one piece,
    probes and canaries sampled from all of it."""
    questions = [f"Explain topic {i} in a few words." for i in range(400)]
    rows = [
        {"instruction_id": instruction_id(q, None), "instruction": q, "system_prompt": None}
        for q in questions
    ]
    monkeypatch.setattr(cost, "PLAN_SLICE", 50, raising=False)
    made: list[weakref.ref[Planned]] = []
    alive: list[int] = []  # plans made earlier and still alive, at each planner call

    def tracked(planner: Callable[..., list[Planned]]) -> Callable[..., list[Planned]]:
        def plan(*args: Any, **kwargs: Any) -> list[Planned]:
            alive.append(sum(ref() is not None for ref in made))
            plans = planner(*args, **kwargs)
            made.extend(weakref.ref(plan) for plan in plans)
            return plans

        return plan

    monkeypatch.setattr(cost, "plan_completions", tracked(cost.plan_completions))
    monkeypatch.setattr(judge_plan, "plan_judging", tracked(judge_plan.plan_judging))
    sliced = plan_batch(rows, config, "sliced.jsonl")
    assert not [ref for ref in made if ref() is not None]  # none kept with the sums
    assert len(made) > 2000  # 5 completions per instruction, and the judge requests
    assert max(alive) < len(made) / 4  # about a slice's (of 8) generation and judge plans

    monkeypatch.setattr(cost, "PLAN_SLICE", len(rows))
    whole = plan_batch(rows, config, "whole.jsonl")
    assert estimate(sliced) == estimate(whole)
    assert sliced.bounds == whole.bounds and sliced.pool_calls == whole.pool_calls
    assert context_warnings(sliced) == context_warnings(whole)


@pytest.mark.parametrize(("members", "rewritten"), [(["gen-b"], 3), ([0], 2), ([1, "gen-a"], 5)])
def test_evol_quality_members_rewrite_only_their_answers_as_estimated(
    make_config: Callable[..., PipelineConfig],
    storage: Storage,
    insert_rows: Callable[[str, list[dict[str, Any]]], None],
    members: list[str | int],
    rewritten: int,
) -> None:
    # The pool: gen-a (place 0) answers twice per instruction, gen-b (place 1) three times.
    evol = {"model": "gen-a", "num_evolutions": 1, "seed": 5, "members": members}
    config = make_config(evol_quality=evol)
    add_instructions(insert_rows, 0, 3)
    stats = run_stages(config, storage, Scripted())
    parents = storage.query(
        "SELECT DISTINCT c.pool_member FROM evolved_completions AS e "
        "JOIN completions AS c ON c.completion_id = e.parent_completion_id ORDER BY 1"
    )["pool_member"].to_list()
    assert parents == sorted(config.evolved_members())
    assert stats["evolved_completions"].engine_calls == 3 * rewritten
    instructions = storage.query("SELECT * FROM instructions").to_dicts()
    assert by_stage(config, instructions)["evolved_completions"] == (3 * rewritten,) * 2
    # The judge sees every original and the rewrites: its prompts are sized for as many.
    assert set(plan_batch(instructions, config).bounds.candidates.values()) == {5 + rewritten}


def test_evol_quality_members_must_be_in_the_pool(
    make_config: Callable[..., PipelineConfig],
) -> None:
    for stray in (["judge-m"], [2]):
        with pytest.raises(ValueError, match="evol_quality.members names neither"):
            make_config(evol_quality={"model": "gen-a", "members": stray})
