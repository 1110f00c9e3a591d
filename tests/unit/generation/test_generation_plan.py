"""Generation planning: the pool draw, system-prompt variants, config validation, the
diversity guard's regeneration and similarity marks (no engine: a scripted one at most)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.evol_quality.plan import plan_evolution_round
from prefgen_dagster.generation import stage
from prefgen_dagster.generation.plan import draw_pool, plan_completions, regeneration
from prefgen_dagster.llm.driver import run_stage
from prefgen_dagster.llm.pool import EnginePool
from prefgen_dagster.llm.types import LLMRequest, LLMResult, OnResult
from prefgen_dagster.storage.store import Storage
from tests.unit.conftest import config_dict

BATCH = "b1.jsonl"
MakeConfig = Callable[..., PipelineConfig]
Insert = Callable[[str, list[dict[str, Any]]], None]

MODELS = {f"m{i}": {"path": f"models/m{i}"} for i in range(5)} | {"judge-m": {"path": "j"}}
VARIANTS = ["Be helpful.", "Be honest.", "Be truthful."]


def instruction(iid: str, system_prompt: str | None = None) -> dict[str, Any]:
    return {
        "instruction_id": iid,
        "instruction": f"Question {iid}?",
        "system_prompt": system_prompt,
    }


def pool_config(
    make_config: MakeConfig, k: int | None = None, n: int = 3, seed: int = 0, **extra: Any
) -> PipelineConfig:
    """A pool of four models with `n` completions each, `k` of them drawn per instruction."""
    pool = [{"model": f"m{i}", "num_completions": n} for i in range(4)]
    return make_config(
        models=MODELS,
        generation={"pool": pool, "models_per_instruction": k, "seed": seed, **extra},
        evol_quality={"model": "m0"},
    )


# --- draw_pool ---------------------------------------------------------------------------


def test_draw_pool_returns_k_distinct_members() -> None:
    for iid in (f"id-{i}" for i in range(50)):
        for k in (1, 2, 3, 4):
            drawn = draw_pool(5, k, 7, iid)
            assert len(drawn) == len(set(drawn)) == k
            assert drawn == sorted(drawn)
            assert set(drawn) <= set(range(5))


def test_draw_pool_is_stable_and_depends_on_seed_and_id_only() -> None:
    first = [draw_pool(6, 2, 3, f"id-{i}") for i in range(40)]
    # Drawing for many other ids in between changes nothing.
    for i in range(100):
        draw_pool(6, 2, 3, f"other-{i}")
    assert [draw_pool(6, 2, 3, f"id-{i}") for i in range(40)] == first
    assert [draw_pool(6, 2, 4, f"id-{i}") for i in range(40)] != first
    assert len({tuple(d) for d in first}) > 1  # not the same two members for every id


@pytest.mark.parametrize("k", [None, 4, 5, 9])
def test_draw_pool_takes_everyone_when_k_is_none_or_not_smaller(k: int | None) -> None:
    assert draw_pool(4, k, 0, "x") == [0, 1, 2, 3]


def test_every_member_gets_drawn_over_many_ids() -> None:
    counts = Counter(m for i in range(600) for m in draw_pool(6, 2, 1, f"instruction-{i}"))
    assert set(counts) == set(range(6))
    assert sum(counts.values()) == 1200
    assert min(counts.values()) > 120  # 200 expected each


def test_plan_completions_draw_is_batch_independent(make_config: MakeConfig) -> None:
    config = pool_config(make_config, k=2)
    alone = plan_completions([instruction("target")], config, BATCH)
    crowd = [instruction(f"other-{i}") for i in range(10)]
    in_batch = plan_completions([crowd[0], *crowd[1:5], instruction("target"), *crowd[5:]], config,
                                "another-batch")  # fmt: skip
    target = [p for p in in_batch if p.row["instruction_id"] == "target"]
    assert [p.request.call_id for p in target] == [p.request.call_id for p in alone]
    assert [p.row["completion_id"] for p in target] == [p.row["completion_id"] for p in alone]
    assert {p.row["pool_member"] for p in alone} == set(draw_pool(4, 2, 0, "target"))


# --- plan_completions with a draw and with variants ---------------------------------------


def test_plan_completions_gives_k_times_n_per_instruction(make_config: MakeConfig) -> None:
    config = pool_config(make_config, k=2, n=3)
    rows = [instruction(f"id-{i}") for i in range(20)]
    plans = plan_completions(rows, config, BATCH)
    assert len(plans) == 20 * 2 * 3
    assert set(Counter(p.row["instruction_id"] for p in plans).values()) == {6}
    for row in rows:
        mine = [p for p in plans if p.row["instruction_id"] == row["instruction_id"]]
        members = Counter(p.row["pool_member"] for p in mine)
        assert members == dict.fromkeys(draw_pool(4, 2, 0, row["instruction_id"]), 3)
        for plan in mine:
            assert plan.model_name == f"m{plan.row['pool_member']}"
            assert plan.request.model == f"models/m{plan.row['pool_member']}"
    assert len({p.row["completion_id"] for p in plans}) == len(plans)
    # Without a draw every member answers: 4 x 3.
    assert len(plan_completions(rows[:1], pool_config(make_config, k=None, n=3), BATCH)) == 12


def test_system_prompt_variants_are_recorded_and_varied(make_config: MakeConfig) -> None:
    raw = config_dict(
        models=MODELS,
        evol_quality={"model": "m0"},
        generation={
            "pool": [
                {"model": "m0", "num_completions": 4, "system_prompt_variants": VARIANTS},
                {"model": "m1", "num_completions": 2, "system_prompt": "Plain."},
            ],
        },
    )
    config = PipelineConfig.model_validate(raw)
    rows = [instruction(f"id-{i}") for i in range(10)]
    plans = plan_completions(rows, config, BATCH)
    varied = [p for p in plans if p.model_name == "m0"]
    assert len(varied) == 40
    for plan in varied:
        variant = plan.row["system_variant"]
        assert variant in (0, 1, 2)
        assert plan.row["system_prompt"] == VARIANTS[variant]
        assert plan.request.messages[0] == {"role": "system", "content": VARIANTS[variant]}
    assert set(Counter(p.row["system_variant"] for p in varied)) == {0, 1, 2}
    # Samples of one instruction do not all get the same variant.
    per_instruction = [
        {
            p.row["system_variant"]
            for p in varied
            if p.row["instruction_id"] == row["instruction_id"]
        }
        for row in rows
    ]
    assert any(len(chosen) > 1 for chosen in per_instruction)
    for plan in plans:
        if plan.model_name == "m1":
            assert (plan.row["system_variant"], plan.row["system_prompt"]) == (None, "Plain.")
    # Stable: the same variant for the same slot on every plan.
    again = plan_completions(rows, config, BATCH)
    assert [p.row["system_variant"] for p in again] == [p.row["system_variant"] for p in plans]
    # An instruction's own system prompt still wins over the variants.
    own = plan_completions([instruction("x", "Own prompt.")], config, BATCH)
    assert {p.row["system_prompt"] for p in own} == {"Own prompt."}


# --- config validation ----------------------------------------------------------------------


def test_system_prompt_and_variants_together_are_rejected() -> None:
    member = {"model": "m0", "system_prompt": "One.", "system_prompt_variants": VARIANTS}
    raw = config_dict(
        models=MODELS,
        evol_quality={"model": "m0"},
        generation={"pool": [member, {"model": "m1"}]},
    )
    with pytest.raises(ValidationError, match="not both"):
        PipelineConfig.model_validate(raw)


def test_models_per_instruction_must_fit_the_pool(make_config: MakeConfig) -> None:
    assert pool_config(make_config, k=4).generation.models_per_instruction == 4
    with pytest.raises(ValidationError, match="larger than the pool"):
        pool_config(make_config, k=5)
    with pytest.raises(ValidationError):
        pool_config(make_config, k=0)


def evol(make_config: MakeConfig, **settings: Any) -> PipelineConfig:
    return make_config(evol_quality={"model": "gen-a", **settings})


def test_unknown_criteria_are_rejected(make_config: MakeConfig) -> None:
    with pytest.raises(ValidationError, match="concise"):
        evol(make_config, criteria=["details", "concise"])
    with pytest.raises(ValidationError, match="non-empty"):
        evol(make_config, criteria=[])


def test_custom_criteria_are_accepted_and_used(make_config: MakeConfig) -> None:
    goal = "Say the same in half the words."
    config = evol(make_config, criteria=["concise"], custom_criteria={"concise": goal})
    parents = [
        {"completion_id": f"c{i}", "instruction_id": "iid", "text": f"answer {i}"} for i in range(3)
    ]
    plans = plan_evolution_round(parents, {"iid": instruction("iid")}, config, 1, BATCH)
    assert len(plans) == 3
    for plan in plans:
        assert plan.row["mutation"] == "concise"
        assert f"Goal for this rewrite: {goal}" in plan.request.messages[0]["content"]
    # A custom criterion sits beside the built-in ones.
    mixed = evol(make_config, criteria=["details", "concise"], custom_criteria={"concise": goal})
    many = [{"completion_id": f"c{i}", "instruction_id": "iid", "text": "t"} for i in range(40)]
    mutations = {
        p.row["mutation"]
        for p in plan_evolution_round(many, {"iid": instruction("iid")}, mixed, 1, BATCH)
    }
    assert mutations == {"details", "concise"}


# --- regeneration ---------------------------------------------------------------------------


def test_regeneration_keeps_the_slot_and_warms_up(config: PipelineConfig) -> None:
    plan = plan_completions([instruction("iid")], config, BATCH)[0]
    assert plan.request.sampling.temperature == 1.0
    seen_calls, seen_seeds = {plan.request.call_id}, {plan.request.seed}
    for attempt, temperature in [(1, 1.2), (2, 1.4), (3, 1.6)]:
        again = regeneration(plan, attempt, 0.2)
        assert again.row["completion_id"] == plan.row["completion_id"]
        assert again.row["regenerations"] == attempt
        assert again.request.sampling.temperature == pytest.approx(temperature)
        assert again.request.sampling.top_p == plan.request.sampling.top_p
        assert again.request.sampling.max_tokens == plan.request.sampling.max_tokens
        assert again.request.messages == plan.request.messages
        assert again.model_name == plan.model_name
        seen_calls.add(again.request.call_id)
        seen_seeds.add(again.request.seed)
    assert len(seen_calls) == len(seen_seeds) == 4
    assert regeneration(plan, 6, 0.5).request.sampling.temperature == 2.0  # capped
    assert plan.row["regenerations"] == 0  # the original plan is left as it was


@dataclass
class SameAnswer:
    """An engine opener whose engines give every request the same text, and log them."""

    asked: list[LLMRequest] = field(default_factory=list)

    def __call__(self, config: PipelineConfig, model_name: str) -> SameAnswer:
        return self

    def generate(
        self, requests: Sequence[LLMRequest], on_result: OnResult | None = None
    ) -> list[LLMResult]:
        self.asked.extend(requests)
        return [LLMResult("the very same answer", "stop", 5, 4) for _ in requests]

    def close(self) -> None:
        pass


def test_each_regeneration_attempt_warms_by_step_times_attempt(
    make_config: MakeConfig, storage: Storage, insert_rows: Insert
) -> None:
    insert_rows("instructions", [{**instruction("iid"), "batch_id": BATCH, "source": "t",
                                  "source_row": 0}])  # fmt: skip
    generation = {**config_dict()["generation"], "diversity": {"max_regenerations": 2}}
    config = make_config(generation=generation)
    engine = SameAnswer()
    made = run_stage(stage.STAGE, config, storage, BATCH, EnginePool(engine))
    frame, stats = made.outputs["completions"], made.stats
    # Five slots; all but the first repeat it, so they are asked again twice.
    assert frame["regenerations"].to_list() == [0, 2, 2, 2, 2]
    # Each round asks only the slots it regenerates: 5 + 4 + 4 distinct requests, each
    # counted once (not 3 rounds x 5 with the repeats as cache hits).
    assert (stats.requested, stats.cache_hits, stats.engine_calls) == (13, 0, 13)
    assert frame["too_similar"].to_list() == [False, True, True, True, True]
    slot = frame.row(1, named=True)["completion_id"]
    (planned,) = [
        p
        for p in plan_completions([instruction("iid")], config, BATCH)
        if p.row["completion_id"] == slot
    ]
    seeds = [planned.request.seed] + [regeneration(planned, a, 0.2).request.seed for a in (1, 2)]
    temperatures = [r.sampling.temperature for r in engine.asked if r.seed in seeds]
    assert temperatures == pytest.approx([1.0, 1.2, 1.4])


# --- similarity marks ---------------------------------------------------------------------


def test_mark_similarity_per_instruction() -> None:
    rows: list[dict[str, Any]] = [
        {"instruction_id": "i1", "text": "The tide rises twice a day."},
        {"instruction_id": "i2", "text": "The tide rises twice a day."},
        {"instruction_id": "i1", "text": "The tide rises twice a day."},
        {"instruction_id": "i1", "text": "Volcanoes form where plates meet."},
        {"instruction_id": "i2", "text": None},
        {"instruction_id": "i3", "text": None},
    ]
    stage._mark_similarity(rows, 0.9)
    marks = [(row["similarity"], row["too_similar"]) for row in rows]
    # The first of each instruction has nothing to compare with, even if another
    # instruction's completion is identical.
    assert marks[0] == (None, False)
    assert marks[1] == (None, False)
    assert marks[5] == (None, False)
    assert marks[2] == (1.0, True)
    assert 0.0 < marks[3][0] < 0.5 and marks[3][1] is False
    assert marks[4] == (0.0, False)  # an empty text shares nothing with a real one
    # 1.0 turns the guard off: an exact repeat is marked but not too similar.
    stage._mark_similarity(rows, 1.0)
    assert (rows[2]["similarity"], rows[2]["too_similar"]) == (1.0, False)
