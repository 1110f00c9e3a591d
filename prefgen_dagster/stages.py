"""Each LLM stage end to end: read its inputs from DuckDB, run the plan, return its rows.

The Dagster assets call these and write the result; the CLI and the benchmark reuse them.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from prefgen_dagster import planning
from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.judge_parsing import parse_judge_output
from prefgen_dagster.llm_runner import EngineFactory, RunStats, open_engine, run_requests
from prefgen_dagster.storage import Storage


def _rows(storage: Storage, table: str, batch_id: str, order_by: str) -> list[dict[str, Any]]:
    frame = storage.query(
        f"SELECT * FROM {table} WHERE batch_id = ? ORDER BY {order_by}", [batch_id]
    )
    return frame.to_dicts()


def generate_completions(
    config: PipelineConfig,
    storage: Storage,
    batch_id: str,
    engine_factory: EngineFactory = open_engine,
) -> tuple[pl.DataFrame, RunStats]:
    instructions = _rows(storage, "instructions", batch_id, "source_row")
    plans = planning.plan_completions(instructions, config, batch_id)
    answers, stats = run_requests(
        [(p.model_name, p.request) for p in plans], storage, config, engine_factory
    )
    rows = [planning.answered_row(p, answers[p.request.call_id]) for p in plans]
    return pl.DataFrame(rows, infer_schema_length=None), stats


def evolve_completions(
    config: PipelineConfig,
    storage: Storage,
    batch_id: str,
    engine_factory: EngineFactory = open_engine,
) -> tuple[pl.DataFrame, RunStats]:
    """`num_evolutions` rounds; each round is one stage-wide batch built on the previous one."""
    instructions = {
        row["instruction_id"]: row for row in _rows(storage, "instructions", batch_id, "source_row")
    }
    parents = _rows(storage, "completions", batch_id, "completion_id")
    total = RunStats()
    evolved: list[dict[str, Any]] = []
    for round_index in range(1, config.evol_quality.num_evolutions + 1):
        plans = planning.plan_evolution_round(parents, instructions, config, round_index, batch_id)
        answers, stats = run_requests(
            [(p.model_name, p.request) for p in plans], storage, config, engine_factory
        )
        total.add(stats)
        parents = [planning.answered_row(p, answers[p.request.call_id]) for p in plans]
        evolved.extend(parents)
    return pl.DataFrame(evolved, infer_schema_length=None), total


def rate_completions(
    config: PipelineConfig,
    storage: Storage,
    batch_id: str,
    engine_factory: EngineFactory = open_engine,
) -> tuple[pl.DataFrame, RunStats]:
    """Judge every pooled and evolved completion of each instruction together.

    An answer that does not parse is asked again (at most `max_reasks` times); after that its
    ratings are stored as NULL with the raw output and the parse status.
    """
    instructions = {
        row["instruction_id"]: row for row in _rows(storage, "instructions", batch_id, "source_row")
    }
    candidates = storage.query(
        "SELECT completion_id, instruction_id, text FROM completions WHERE batch_id = $b "
        "UNION ALL "
        "SELECT completion_id, instruction_id, text FROM evolved_completions WHERE batch_id = $b",
        {"b": batch_id},
    ).to_dicts()
    total = RunStats()
    rows: list[dict[str, Any]] = []
    pending = candidates
    for attempt in range(config.judge.max_reasks + 1):
        if not pending:
            break
        plans = planning.plan_judging(pending, instructions, config, attempt)
        answers, stats = run_requests(
            [(p.model_name, p.request) for p in plans], storage, config, engine_factory
        )
        total.add(stats)
        retry_ids: set[str] = set()
        for plan in plans:
            raw = answers[plan.request.call_id]["response"]
            verdict = parse_judge_output(raw, len(plan.row["completion_ids"]))
            if verdict.ok or attempt == config.judge.max_reasks:
                rows.extend(planning.rating_rows(plan, verdict, raw, config, batch_id))
            else:
                retry_ids.update(plan.row["completion_ids"])
        pending = [c for c in candidates if c["completion_id"] in retry_ids]
    return pl.DataFrame(rows, infer_schema_length=None), total
