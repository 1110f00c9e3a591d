"""The generation stage end to end: plan, ask the pool, guard diversity, return the rows."""

from __future__ import annotations

from typing import Any

import polars as pl

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.generation.diversity import max_similarity_to_earlier
from prefgen_dagster.generation.plan import plan_completions, regeneration
from prefgen_dagster.llm.plan import Planned, answered_row
from prefgen_dagster.llm.pool import EnginePool
from prefgen_dagster.llm.reuse import keep, stored_units, unit_keys, with_kept
from prefgen_dagster.llm.runner import RunStats, ask
from prefgen_dagster.stages import GENERATION
from prefgen_dagster.storage.store import Storage, batch_instructions
from prefgen_dagster.text.embeddings import embed_rows
from prefgen_dagster.text.quality import echoed_marker


def generate_completions(
    config: PipelineConfig,
    storage: Storage,
    batch_id: str,
    engines: EnginePool,
    run_id: str | None = None,
) -> tuple[pl.DataFrame, RunStats]:
    """The pool's completions, with the diversity guard: a completion too close to an
    earlier one of the same instruction is asked again (new seed, warmer), at most
    `max_regenerations` times; its final similarity is stored either way (and its
    embedding, with embeddings on). A request that failed for good keeps its row, with the
    error and no text; it is not compared with the others. The rows of instructions whose
    requests and settings are unchanged since the stored ones are kept (`llm/reuse.py`)."""
    diversity = config.generation.diversity
    threshold = diversity.max_cosine if config.uses_embeddings() else diversity.max_similarity
    vectors: dict[str, list[float]] = {}
    total = RunStats()
    with storage.session():  # one connection for both reads
        instructions = batch_instructions(storage, batch_id)
        stored = stored_units(storage, GENERATION.table, batch_id)
    all_plans = plan_completions(list(instructions.values()), config, batch_id)
    # An instruction is a unit: the guard compares its completions with each other.
    keys = unit_keys(all_plans, _instruction, GENERATION.code_version(config), _call_and_slot)
    kept = keep(stored, keys)
    total.reused = kept.requests
    first_plans = [plan for plan in all_plans if _instruction(plan) in kept.todo]
    plans = first_plans
    pending = first_plans  # what this round asks: every slot first, then the regenerated ones
    answers: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for attempt in range(diversity.max_regenerations + 1):
        answers |= ask(pending, storage, config, engines, total, run_id)
        rows = [answered_row(p, answers[p.request.call_id]) for p in plans]
        answered = [row for row in rows if row["error"] is None]
        for row in rows:
            row["echoed_marker"] = echoed_marker(row["text"])
            row["similarity"], row["too_similar"] = None, False  # set below if answered
        embed_rows(answered, config.uses_embeddings(), vectors)
        _mark_similarity(answered, threshold)
        if attempt == diversity.max_regenerations or not any(r["too_similar"] for r in rows):
            break
        pending = [
            regeneration(first, attempt + 1, diversity.temperature_step)
            for first, row in zip(first_plans, rows, strict=True)
            if row["too_similar"]
        ]
        regenerated = {p.row["completion_id"]: p for p in pending}
        plans = [regenerated.get(p.row["completion_id"], p) for p in plans]
    for row in rows:
        row["plan_key"] = keys[row["instruction_id"]]
    return with_kept(kept, GENERATION.table, rows), total


def _instruction(plan: Planned) -> str:
    return plan.row["instruction_id"]


def _call_and_slot(plan: Planned) -> tuple[str, str]:
    return plan.request.call_id, plan.row["completion_id"]


def _mark_similarity(rows: list[dict[str, Any]], threshold: float) -> None:
    """Set each row's highest similarity to an earlier completion of its instruction: cosine
    of the embeddings where the rows have them, else character 3-gram Jaccard."""
    by_instruction: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_instruction.setdefault(row["instruction_id"], []).append(row)
    for group in by_instruction.values():
        embedded = all("embedding" in row for row in group)
        similarities = max_similarity_to_earlier(
            [row["text"] or "" for row in group],
            [row["embedding"] for row in group] if embedded else None,
        )
        for row, similarity in zip(group, similarities, strict=True):
            row["similarity"] = similarity
            row["too_similar"] = similarity is not None and similarity > threshold
