"""Prompt builders and request planning: what is asked, with which ids, seeds and settings."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.config.evol_quality import EVOL_CRITERIA
from prefgen_dagster.evol_quality.prompt import choose_criterion
from prefgen_dagster.generation import prompt as generation
from prefgen_dagster.generation.plan import plan_completions
from prefgen_dagster.judge import prompt as ultrafeedback
from prefgen_dagster.judge.parse import parse_listwise_output
from prefgen_dagster.judge.plan import judge_groups, plan_judging, rating_rows
from prefgen_dagster.llm.plan import Planned

BATCH = "b1.jsonl"

INSTRUCTIONS = [
    {"instruction_id": "iid-1", "instruction": "Explain tides.", "system_prompt": None},
    {"instruction_id": "iid-2", "instruction": "Write a haiku.", "system_prompt": "Be a poet."},
]


def completion_ids(config: PipelineConfig) -> list[str]:
    return [p.row["completion_id"] for p in plan_completions(INSTRUCTIONS, config, BATCH)]


def with_pool_sampling(config: PipelineConfig, member: int, **sampling: Any) -> PipelineConfig:
    raw = config.model_dump(mode="json")
    raw["generation"]["pool"][member]["sampling"].update(sampling)
    return PipelineConfig.model_validate(raw)


def candidate(completion_id: str, instruction_id: str, text: str) -> dict[str, str]:
    return {"completion_id": completion_id, "instruction_id": instruction_id, "text": text}


INSTRUCTIONS_BY_ID = {row["instruction_id"]: row for row in INSTRUCTIONS}


# --- prompts -------------------------------------------------------------------------------


def test_judge_schema_fixes_count_and_bounds() -> None:
    schema = ultrafeedback.listwise_schema(3, 120)
    ratings = schema["properties"]["ratings"]
    assert ratings["minItems"] == ratings["maxItems"] == 3
    item = ratings["items"]["properties"]
    assert item["rating"] == {"type": "integer", "minimum": 1, "maximum": 5}
    assert item["rationale"]["maxLength"] == 120
    assert ratings["items"]["required"] == ["rating", "rationale"]
    assert ratings["items"]["additionalProperties"] is False
    assert schema["required"] == ["ratings"]


def test_judge_messages_list_responses_in_order() -> None:
    messages = ultrafeedback.listwise_messages("Explain tides.", ["first", "second", "third"])
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert "# Instruction\nExplain tides." in user
    positions = [
        user.index(f"## Response {n}\n{text}")
        for n, text in [(1, "first"), (2, "second"), (3, "third")]
    ]
    assert positions == sorted(positions)
    assert "## Response 4" not in user
    assert "exactly 3 entries" in user


def test_generation_messages_system_prompt_precedence() -> None:
    assert generation.generation_messages("Q", "own", "pool") == [
        {"role": "system", "content": "own"},
        {"role": "user", "content": "Q"},
    ]
    assert generation.generation_messages("Q", None, "pool")[0]["content"] == "pool"
    assert generation.generation_messages("Q", None, None) == [{"role": "user", "content": "Q"}]


def test_choose_criterion_is_deterministic_and_batch_independent() -> None:
    criteria = list(EVOL_CRITERIA)
    alone = choose_criterion(5, "root-x", 1, criteria)
    # The choice takes only the row's own id: computing many others first changes nothing.
    for index in range(50):
        choose_criterion(5, f"other-{index}", 1, criteria)
    assert choose_criterion(5, "root-x", 1, criteria) == alone
    assert alone in criteria


def test_choose_criterion_covers_the_criteria() -> None:
    criteria = list(EVOL_CRITERIA)
    counts = Counter(choose_criterion(0, f"completion-{i}", 1, criteria) for i in range(500))
    assert set(counts) == set(criteria)
    assert min(counts.values()) > 50  # roughly uniform over 5 criteria (100 expected each)
    assert choose_criterion(0, "only", 1, ["details"]) == "details"


def test_choose_criterion_varies_with_seed_and_round() -> None:
    criteria = list(EVOL_CRITERIA)
    by_round = [choose_criterion(0, f"c-{i}", 1, criteria) for i in range(40)]
    assert by_round != [choose_criterion(0, f"c-{i}", 2, criteria) for i in range(40)]
    assert by_round != [choose_criterion(1, f"c-{i}", 1, criteria) for i in range(40)]


# --- plan_completions ---------------------------------------------------------------------


def test_plan_completions_counts_ids_and_seeds(config: PipelineConfig) -> None:
    plans = plan_completions(INSTRUCTIONS, config, BATCH)
    per_instruction = sum(m.num_completions for m in config.generation.pool)
    assert per_instruction == 5
    assert len(plans) == len(INSTRUCTIONS) * per_instruction
    assert Counter(p.row["instruction_id"] for p in plans) == {"iid-1": 5, "iid-2": 5}
    assert Counter(p.model_name for p in plans) == {"gen-a": 4, "gen-b": 6}
    ids = [p.row["completion_id"] for p in plans]
    assert len(set(ids)) == len(ids)
    assert len({p.request.seed for p in plans}) == len(plans)
    assert len({p.request.call_id for p in plans}) == len(plans)
    assert {p.row["batch_id"] for p in plans} == {BATCH}
    assert [p.row["sample_index"] for p in plans[:5]] == [0, 1, 0, 1, 2]
    first = plans[0]
    assert first.request.model == "models/gen-a"  # the model's identity is its path
    assert first.row["model"] == "models/gen-a"
    assert json.loads(first.row["sampling"]) == {
        "max_tokens": 48,
        "temperature": 1.0,
        "top_p": 0.95,
    }


def test_plan_completions_ids_are_stable(config: PipelineConfig, make_config) -> None:
    first = plan_completions(INSTRUCTIONS, config, BATCH)
    second = plan_completions(INSTRUCTIONS, make_config(), BATCH)
    assert [p.row["completion_id"] for p in first] == [p.row["completion_id"] for p in second]
    assert [p.request.call_id for p in first] == [p.request.call_id for p in second]
    assert [p.request.seed for p in first] == [p.request.seed for p in second]


def test_changing_a_pool_member_sampling_changes_only_its_ids(config: PipelineConfig) -> None:
    before = plan_completions(INSTRUCTIONS, config, BATCH)
    after = plan_completions(INSTRUCTIONS, with_pool_sampling(config, 1, temperature=0.5), BATCH)
    for old, new in zip(before, after, strict=True):
        if old.model_name == "gen-b":
            assert old.row["completion_id"] != new.row["completion_id"]
        else:
            assert old.row["completion_id"] == new.row["completion_id"]


def test_changing_the_judge_does_not_change_completion_ids(
    config: PipelineConfig, make_config
) -> None:
    judge = {"model": "gen-b", "rationale_max_chars": 200, "max_reasks": 3, "seed": 9}
    assert completion_ids(config) == completion_ids(make_config(judge=judge))


def test_instruction_system_prompt_wins_over_pool_member(config: PipelineConfig) -> None:
    plans = plan_completions(INSTRUCTIONS, config, BATCH)
    systems = {(p.row["instruction_id"], p.model_name): p.row["system_prompt"] for p in plans}
    assert systems == {
        ("iid-1", "gen-a"): None,
        ("iid-1", "gen-b"): "You are a helpful, honest assistant.",
        ("iid-2", "gen-a"): "Be a poet.",
        ("iid-2", "gen-b"): "Be a poet.",
    }
    for plan in plans:
        messages = plan.request.messages
        if plan.row["system_prompt"] is None:
            assert [m["role"] for m in messages] == ["user"]
        else:
            assert messages[0] == {"role": "system", "content": plan.row["system_prompt"]}


# --- plan_judging and rating_rows ---------------------------------------------------------


CANDIDATES = [
    candidate("c-3", "iid-1", "third text"),
    candidate("c-1", "iid-1", "first text"),
    candidate("c-9", "iid-2", "other instruction"),
    candidate("c-2", "iid-1", "second text"),
]


def label_plans(config: PipelineConfig, attempt: int = 0) -> list[Planned]:
    """The candidates' own requests (no position probe, no canaries)."""
    groups = [g for g in judge_groups(CANDIDATES, [], config) if g.purpose == "label"]
    return plan_judging(groups, INSTRUCTIONS_BY_ID, config, attempt)


def test_plan_judging_orders_completions_by_id(config: PipelineConfig) -> None:
    plans = label_plans(config)
    assert [p.row.instruction_id for p in plans] == ["iid-1", "iid-2"]
    assert plans[0].row.completion_ids == ["c-1", "c-2", "c-3"]
    assert plans[1].row.completion_ids == ["c-9"]
    user = plans[0].request.messages[1]["content"]
    assert user.index("first text") < user.index("second text") < user.index("third text")
    schema = plans[0].request.json_schema
    assert schema is not None
    assert schema["properties"]["ratings"]["maxItems"] == 3
    assert plans[0].request.model == "models/judge"
    assert plans[0].request.sampling.temperature == 0.0


def test_reask_changes_call_id_and_raises_temperature(config: PipelineConfig) -> None:
    first = label_plans(config)
    again = label_plans(config, attempt=1)
    for old, new in zip(first, again, strict=True):
        assert new.row.attempt == 1
        assert new.request.call_id != old.request.call_id
        assert new.request.seed != old.request.seed
        assert new.request.sampling.temperature >= 0.7
        assert new.request.sampling.max_tokens == old.request.sampling.max_tokens
        assert new.request.messages == old.request.messages


def test_rating_rows_from_a_good_verdict(config: PipelineConfig) -> None:
    plan = label_plans(config)[0]
    raw = json.dumps({"ratings": [{"rating": r, "rationale": f"r{r}"} for r in (5, 3, 1)]})
    rows = rating_rows(plan, parse_listwise_output(raw, 3), raw, config, BATCH)
    assert [(r["completion_id"], r["position"], r["rating"]) for r in rows] == [
        ("c-1", 1, 5),
        ("c-2", 2, 3),
        ("c-3", 3, 1),
    ]
    assert {r["parse_status"] for r in rows} == {"ok"}
    assert {r["attempts"] for r in rows} == {1}
    assert {r["judge"] for r in rows} == {"models/judge"}


def test_rating_rows_store_null_and_raw_output_on_failure(config: PipelineConfig) -> None:
    plan: Planned = label_plans(config, attempt=1)[0]
    raw = "I liked the second one best."
    rows = rating_rows(plan, parse_listwise_output(raw, 3), raw, config, BATCH)
    assert len(rows) == 3
    for row in rows:
        assert row["rating"] is None
        assert row["rationale"] is None
        assert row["raw_output"] == raw
        assert row["parse_status"] == "unparseable"
        assert row["attempts"] == 2
        assert row["call_id"] == plan.request.call_id
        assert row["batch_id"] == BATCH
