"""The EvolQuality stage end to end: rewrite round after round, return the kept rewrites."""

from __future__ import annotations

from typing import Any

import polars as pl

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.evolution import prompt
from prefgen_dagster.evolution.plan import plan_evolution_round
from prefgen_dagster.llm.plan import answered_row
from prefgen_dagster.llm.pool import EnginePool
from prefgen_dagster.llm.runner import RunStats, ask
from prefgen_dagster.storage.schema import TABLES
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
    failed for good is returned with its error and no text, and is not rewritten further."""
    with storage.session():  # one connection for both reads
        instructions = batch_instructions(storage, batch_id)
        parents = batch_rows(storage, "completions", batch_id, "completion_id")
    total = RunStats()
    rounds: list[list[dict[str, Any]]] = []
    for round_index in range(1, config.evol_quality.num_evolutions + 1):
        # A text whose request failed has nothing to rewrite; its row says why.
        parents = [row for row in parents if row["error"] is None]
        plans = plan_evolution_round(parents, instructions, config, round_index, batch_id)
        answers = ask(plans, storage, config, engines, total, run_id)
        parents = [answered_row(p, answers[p.request.call_id]) for p in plans]
        for row in parents:
            row["echoed_marker"] = echoed_marker(row["text"], tuple(prompt.HEADINGS.values()))
        rounds.append(parents)
    kept = rounds[-1:] if config.evol_quality.keep == "last" else rounds
    rows = [row for round_rows in kept for row in round_rows]
    embed_rows([row for row in rows if row["error"] is None], config.uses_embeddings(), {})
    return TABLES["evolved_completions"].frame(rows), total
