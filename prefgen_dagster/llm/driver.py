"""The one loop of every LLM stage (`llm/stage.py` says what a stage supplies): keep the
stored rows of the units whose requests and settings are unchanged (`llm/reuse.py`), ask the
other units' requests a whole stage-wide round at a time, hand each round's answers to the
stage for rows and follow-up requests, and stamp every row with its unit's key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.llm.pool import EnginePool
from prefgen_dagster.llm.reuse import keep, stored_units, unit_keys, with_kept
from prefgen_dagster.llm.runner import RunStats, ask
from prefgen_dagster.llm.stage import Batch, LLMStage, Work
from prefgen_dagster.storage.store import Storage


@dataclass
class StageRun:
    """What a stage made for a batch: its tables' frames (the kept rows and the new ones),
    the work it planned, and the counts of its requests."""

    outputs: dict[str, pl.DataFrame]
    work: Work
    stats: RunStats


def run_stage(
    stage: LLMStage,
    config: PipelineConfig,
    storage: Storage,
    batch_id: str,
    engines: EnginePool,
    run_id: str | None = None,
) -> StageRun:
    """Run `stage` for a batch. A request that failed for good is not asked again in this
    run; its row carries the error, and its unit is made again by the next run."""
    stats = RunStats()
    batch = Batch(config, storage, batch_id)
    with storage.session():  # one connection for the stage's reads
        work = stage.work(batch)
        stored = stored_units(storage, stage.spec.table, batch_id)
    keys = unit_keys(work.plans, work.unit_of, stage.spec.code_version(config), work.identity)
    kept = keep(stored, keys)
    stats.reused = kept.requests
    rows: list[dict[str, Any]] = []
    pending = work.start(kept.todo)
    for attempt in range(work.rounds):
        if not pending:
            break
        answers = ask(pending, storage, config, engines, stats, run_id)
        step = work.answered(pending, answers, attempt)
        rows += [{**row, "plan_key": keys[work.unit_of(plan)]} for plan, row in step.rows]
        pending = step.follow_up
    frame = with_kept(kept, stage.frame(rows))
    return StageRun(stage.outputs(frame, work, batch), work, stats)
