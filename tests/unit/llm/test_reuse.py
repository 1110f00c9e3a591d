"""Incremental stages (`llm/reuse.py`): the three LLM stages keep the stored rows of every
unit whose requests and settings are unchanged, and redo the others (a scripted engine, a
real DuckDB file)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.evol_quality import stage as evol_quality
from prefgen_dagster.generation import stage as generation
from prefgen_dagster.ids import stable_hash
from prefgen_dagster.judge import stage as judge
from prefgen_dagster.llm.driver import run_stage
from prefgen_dagster.llm.pool import EnginePool
from prefgen_dagster.llm.runner import RunStats
from prefgen_dagster.llm.types import LLMRequest, LLMResult, OnResult
from prefgen_dagster.storage.store import Storage
from tests.unit.conftest import config_dict
from tests.unit.rows import build_models

BATCH = "b1.jsonl"
STAGE_TABLES = ("completions", "evolved_completions", "ratings")
Insert = Callable[[str, list[dict[str, Any]]], None]


@dataclass
class Scripted:
    """Engines that answer every request from its call id: a distinct text, or for a judge
    a valid verdict. Requests whose prompt contains a word in `failing` fail."""

    asked: list[LLMRequest] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)

    def __call__(self, config: PipelineConfig, model_name: str) -> Scripted:
        return self

    def generate(
        self, requests: Sequence[LLMRequest], on_result: OnResult | None = None
    ) -> list[LLMResult]:
        self.asked.extend(requests)
        return [self._answer(request) for request in requests]

    def _answer(self, request: LLMRequest) -> LLMResult:
        prompt = request.messages[-1]["content"]
        if any(word in prompt for word in self.failing):
            return LLMResult(None, error="InternalServerError: scripted")
        digest = stable_hash([request.call_id])
        if request.json_schema is None:
            return LLMResult(f"Reply {digest[:20]} ends here.", "stop", 5, 4)
        shown = request.json_schema["properties"]["ratings"]["minItems"]
        ratings = [{"rating": 1 + int(c, 16) % 5, "rationale": "fine"} for c in digest[:shown]]
        return LLMResult(json.dumps({"ratings": ratings}), "stop", 5, 4)

    def close(self) -> None:
        pass


def add_instructions(insert_rows: Insert, first: int, last: int) -> None:
    insert_rows(
        "instructions",
        [
            {
                "batch_id": BATCH,
                "instruction_id": f"iid-{i}",
                "instruction": f"Question {i}: why is the sky blue?",
                "source": "t",
                "source_row": i,
            }
            for i in range(first, last)
        ],
    )


def run_stages(config: PipelineConfig, storage: Storage, engine: Scripted) -> dict[str, RunStats]:
    """The three LLM stages and the candidates between them, each writing its partition."""
    pool = EnginePool(engine)
    stats = {}
    for stage in (generation.STAGE, evol_quality.STAGE, judge.STAGE):
        if stage is judge.STAGE:
            build_models(storage, config, BATCH, "candidates")
        made = run_stage(stage, config, storage, BATCH, pool)
        storage.replace_partition(stage.spec.table, BATCH, made.outputs[stage.spec.table])
        stats[stage.spec.table] = made.stats
    return stats


def tables(storage: Storage) -> dict[str, list[dict[str, Any]]]:
    return {
        table: storage.query(f"SELECT * FROM {table} ORDER BY ALL").to_dicts()
        for table in STAGE_TABLES
    }


def completions_where(storage: Storage, condition: str) -> int:
    return storage.query(f"SELECT count(*) AS n FROM completions WHERE {condition}")["n"][0]


def counts(stats: dict[str, RunStats], figure: str) -> list[int]:
    return [getattr(stats[table], figure) for table in STAGE_TABLES]


def test_a_rerun_keeps_every_row_without_asking_or_looking_up(
    config: PipelineConfig, storage: Storage, insert_rows: Insert
) -> None:
    add_instructions(insert_rows, 0, 3)
    engine = Scripted()
    first = run_stages(config, storage, engine)
    assert counts(first, "reused") == [0, 0, 0]
    asked = len(engine.asked)
    before = tables(storage)

    again = run_stages(config, storage, engine)
    assert len(engine.asked) == asked
    assert counts(again, "requested") == [0, 0, 0]  # not even a cache lookup
    assert counts(again, "reused") == counts(first, "requested")
    assert tables(storage) == before


def test_a_grown_batch_works_only_on_its_new_instructions(
    config: PipelineConfig, storage: Storage, insert_rows: Insert
) -> None:
    add_instructions(insert_rows, 0, 3)
    engine = Scripted()
    run_stages(config, storage, engine)
    before = tables(storage)

    add_instructions(insert_rows, 3, 4)
    asked = len(engine.asked)
    grown = run_stages(config, storage, engine)
    new = engine.asked[asked:]
    # Five completions, five rewrites; the judge sees the new instruction's candidates (and
    # its canary), nothing of the first three.
    assert counts(grown, "engine_calls")[:2] == [5, 5]
    assert counts(grown, "engine_calls")[2] > 0
    assert all("Question 3:" in r.messages[-1]["content"] for r in new)
    assert counts(grown, "requested") == counts(grown, "engine_calls")
    after = tables(storage)
    for table in STAGE_TABLES:
        old = [row for row in after[table] if row["instruction_id"] != "iid-3"]
        assert old == before[table], table

    # The same rows as a batch made in one go.
    scratch = Storage(storage.path.with_name("scratch.duckdb"))
    instructions = storage.query("SELECT * FROM instructions WHERE batch_id = ?", [BATCH])
    scratch.replace_partition("instructions", BATCH, instructions)
    run_stages(config, scratch, Scripted())
    assert tables(scratch) == after


def test_units_with_a_failed_request_are_made_again(
    config: PipelineConfig, storage: Storage, insert_rows: Insert
) -> None:
    add_instructions(insert_rows, 0, 3)
    engine = Scripted(failing={"Question 1:"})
    run_stages(config, storage, engine)
    assert completions_where(storage, "error IS NOT NULL") == 5  # all of instruction 1

    engine.failing.clear()
    asked = len(engine.asked)
    healed = run_stages(config, storage, engine)
    # Instruction 1 is asked again, and now answered; the others are kept.
    assert counts(healed, "engine_calls")[:2] == [5, 5]
    assert all("Question 1:" in r.messages[-1]["content"] for r in engine.asked[asked:])
    assert counts(healed, "reused")[0] == 10
    assert completions_where(storage, "error IS NOT NULL") == 0


def test_changed_settings_keep_nothing_of_that_stage(
    config: PipelineConfig, storage: Storage, insert_rows: Insert
) -> None:
    add_instructions(insert_rows, 0, 3)
    engine = Scripted()
    first = run_stages(config, storage, engine)
    # A diversity bound changes no request, but may change which texts are asked again.
    raw = config_dict()
    raw["generation"]["diversity"] = {"max_similarity": 0.95}
    changed = run_stages(PipelineConfig.model_validate(raw), storage, engine)
    assert counts(changed, "reused")[0] == 0
    assert counts(changed, "cache_hits")[0] == counts(first, "requested")[0]
    assert counts(changed, "engine_calls") == [0, 0, 0]
    # The later stages' inputs and settings are the same: their rows are kept.
    assert counts(changed, "reused")[1:] == counts(first, "requested")[1:]
    assert completions_where(storage, "plan_key IS NULL") == 0


def test_rows_of_an_older_file_without_keys_are_made_again(
    config: PipelineConfig, storage: Storage, insert_rows: Insert
) -> None:
    add_instructions(insert_rows, 0, 2)
    engine = Scripted()
    first = run_stages(config, storage, engine)
    with storage.connect() as con:
        for table in STAGE_TABLES:
            con.execute(f"UPDATE {table} SET plan_key = NULL")
    again = run_stages(config, storage, engine)
    assert counts(again, "reused") == [0, 0, 0]
    assert counts(again, "cache_hits") == counts(first, "requested")
    assert pl.DataFrame(tables(storage)["ratings"])["plan_key"].null_count() == 0
