"""Where a pipeline run's time goes, read from the Dagster instance that `prefgen run` records
its runs in: each step's start and end events, and the LLM steps' own figures (engine start-up
and generate seconds, from their materialization metadata)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

LLM_STEPS = ("completions", "evolved_completions", "ratings")
SQL_STEPS = ("candidates", "candidate_pairs", "dpo_pairs")
# The parts, in the order they are printed.
PARTS = (
    "engine start-ups",
    "engine generate",
    "LLM stages' own work (plan, parse, DuckDB, plots)",
    "ingest",
    "SQL models",
    "checks",
    "export",
    "Dagster and the CLI (runs, events, estimate, summary)",
)


def run_ids(dagster_home: Path) -> set[str]:
    """The ids of every run recorded in the instance at `dagster_home`."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        return {run.run_id for run in instance.get_runs()}


def time_by_part(dagster_home: Path, new_runs: set[str], wall_seconds: float) -> dict[str, float]:
    """Seconds per part of the runs in `new_runs`; Dagster's share is what no step covers."""
    import dagster as dg

    steps: dict[str, float] = defaultdict(float)
    engine = {"engine start-ups": 0.0, "engine generate": 0.0}
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for run_id in new_runs:
            started: dict[str, float] = {}
            for entry in instance.all_logs(run_id):
                event = entry.dagster_event
                if event is None or entry.step_key is None:
                    continue
                kind = event.event_type
                if kind == dg.DagsterEventType.STEP_START:
                    started[entry.step_key] = entry.timestamp
                elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                    steps[entry.step_key] += entry.timestamp - started.pop(entry.step_key)
                elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
                    metadata = event.step_materialization_data.materialization.metadata
                    if "engine_seconds" in metadata:
                        engine["engine start-ups"] += metadata["engine_start_seconds"].value
                        engine["engine generate"] += metadata["engine_seconds"].value
    parts = dict.fromkeys(PARTS, 0.0) | engine
    for step, seconds in steps.items():
        if step in LLM_STEPS:
            parts["LLM stages' own work (plan, parse, DuckDB, plots)"] += seconds
        elif step in SQL_STEPS:
            parts["SQL models"] += seconds
        elif step == "instructions":
            parts["ingest"] += seconds
        elif step == "preference_dataset":
            parts["export"] += seconds
        else:
            parts["checks"] += seconds
    parts["LLM stages' own work (plan, parse, DuckDB, plots)"] -= sum(engine.values())
    parts["Dagster and the CLI (runs, events, estimate, summary)"] = wall_seconds - sum(
        steps.values()
    )
    return parts
