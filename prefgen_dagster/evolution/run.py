"""The EvolQuality stage end to end: rewrite round after round, return the kept rewrites."""

from __future__ import annotations

from typing import Any

import polars as pl

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.evolution import prompt
from prefgen_dagster.evolution.plan import plan_evolution_round
from prefgen_dagster.llm.plan import Planned, answered_row
from prefgen_dagster.llm.pool import EnginePool
from prefgen_dagster.llm.reuse import keep, stored_units, unit_keys, with_kept
from prefgen_dagster.llm.runner import RunStats, ask
from prefgen_dagster.stages import EVOLUTION
from prefgen_dagster.storage.store import Storage, batch_instructions, batch_rows
from prefgen_dagster.text.embeddings import embed_rows
from prefgen_dagster.text.quality import echoed_marker


def evolve_completions(
    config: PipelineConfig,
    storage: Storage,
    batch_id: str,
    engines: EnginePool,
    run_id: str | None = None,
) -> tuple[pl.DataFrame, RunStats]:
    """`num_evolutions` rounds; each round is one stage-wide batch built on the previous one.
    With `keep: last` only the final round's rewrites are returned. A rewrite whose request
    failed for good is returned with its error and no text, and is not rewritten further.
    The chains of pooled completions whose first request and settings are unchanged since
    the stored rows are kept (`llm/reuse.py`)."""
    total = RunStats()
    with storage.session():  # one connection for the reads
        instructions = batch_instructions(storage, batch_id)
        # A text whose request failed has nothing to rewrite; its row says why.
        parents = [
            row
            for row in batch_rows(storage, "completions", batch_id, "completion_id")
            if row["error"] is None
        ]
        stored = stored_units(storage, EVOLUTION.table, batch_id)
    plans = plan_evolution_round(parents, instructions, config, 1, batch_id)
    # A pooled completion's chain of rewrites is a unit.
    keys = unit_keys(plans, _root, EVOLUTION.code_version(config))
    kept = keep(stored, keys)
    total.reused = kept.requests
    plans = [plan for plan in plans if _root(plan) in kept.todo]
    rounds: list[list[dict[str, Any]]] = []
    for round_index in range(1, config.evol_quality.num_evolutions + 1):
        if round_index > 1:
            parents = [row for row in parents if row["error"] is None]
            plans = plan_evolution_round(parents, instructions, config, round_index, batch_id)
        answers = ask(plans, storage, config, engines, total, run_id)
        parents = [answered_row(p, answers[p.request.call_id]) for p in plans]
        for row in parents:
            row["echoed_marker"] = echoed_marker(row["text"], tuple(prompt.HEADINGS.values()))
        rounds.append(parents)
    returned = rounds[-1:] if config.evol_quality.keep == "last" else rounds
    rows = [row for round_rows in returned for row in round_rows]
    embed_rows([row for row in rows if row["error"] is None], config.uses_embeddings(), {})
    for row in rows:
        row["plan_key"] = keys[row["root_completion_id"]]
    return with_kept(kept, EVOLUTION.table, rows), total


def _root(plan: Planned) -> str:
    return plan.row["root_completion_id"]
