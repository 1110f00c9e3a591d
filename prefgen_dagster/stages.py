"""Each LLM stage end to end: read its inputs from DuckDB, run the plan, return its rows.

The Dagster assets call these and write the result; the CLI and the benchmark reuse them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from prefgen_dagster import planning
from prefgen_dagster.calibration import calibrate
from prefgen_dagster.canaries import Canary, build_canaries
from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.diversity import max_similarity_to_earlier
from prefgen_dagster.embeddings import embed
from prefgen_dagster.judge_parsing import parse_verdict
from prefgen_dagster.llm_runner import EngineFactory, RunStats, open_engine, run_requests
from prefgen_dagster.prompts.ultrafeedback import ASPECTS
from prefgen_dagster.storage import Storage


def _rows(storage: Storage, table: str, batch_id: str, order_by: str) -> list[dict[str, Any]]:
    sql = f"SELECT * FROM {table} WHERE batch_id = ? ORDER BY {order_by}"
    return storage.query(sql, [batch_id]).to_dicts()


def _instructions(storage: Storage, batch_id: str) -> dict[str, dict[str, Any]]:
    rows = _rows(storage, "instructions", batch_id, "source_row")
    return {row["instruction_id"]: row for row in rows}


def _ask(
    plans: list[planning.Planned],
    storage: Storage,
    config: PipelineConfig,
    engine_factory: EngineFactory,
    total: RunStats,
    run_id: str | None,
) -> dict[str, dict[str, Any]]:
    answers, stats = run_requests(
        [(p.model_name, p.request) for p in plans], storage, config, engine_factory, run_id
    )
    total.add(stats)
    return answers


def generate_completions(
    config: PipelineConfig,
    storage: Storage,
    batch_id: str,
    engine_factory: EngineFactory = open_engine,
    run_id: str | None = None,
) -> tuple[pl.DataFrame, RunStats]:
    """The pool's completions, with the diversity guard: a completion too close to an
    earlier one of the same instruction is asked again (new seed, warmer), at most
    `max_regenerations` times; its final similarity is stored either way (and its
    embedding, with embeddings on)."""
    diversity = config.generation.diversity
    threshold = diversity.max_cosine if config.uses_embeddings() else diversity.max_similarity
    vectors: dict[str, list[float]] = {}
    total = RunStats()
    first_plans = planning.plan_completions(
        list(_instructions(storage, batch_id).values()), config, batch_id
    )
    plans = first_plans
    rows: list[dict[str, Any]] = []
    for attempt in range(diversity.max_regenerations + 1):
        answers = _ask(plans, storage, config, engine_factory, total, run_id)
        rows = [planning.answered_row(p, answers[p.request.call_id]) for p in plans]
        _embed(rows, config, vectors)
        _mark_similarity(rows, threshold)
        if attempt == diversity.max_regenerations or not any(r["too_similar"] for r in rows):
            break
        plans = [
            planning.regeneration(first, attempt + 1, diversity.temperature_step)
            if row["too_similar"]
            else plan
            for first, plan, row in zip(first_plans, plans, rows, strict=True)
        ]
    return pl.DataFrame(rows, infer_schema_length=None), total


def _embed(
    rows: list[dict[str, Any]], config: PipelineConfig, vectors: dict[str, list[float]]
) -> None:
    """Give each row the `embedding` of its text, with embeddings on; `vectors` keeps the
    stage's texts already embedded (a regeneration round embeds only its new texts)."""
    if not config.uses_embeddings():
        return
    new = sorted({row["text"] or "" for row in rows} - vectors.keys())
    vectors.update(zip(new, embed(new), strict=True))
    for row in rows:
        row["embedding"] = vectors[row["text"] or ""]


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


def evolve_completions(
    config: PipelineConfig,
    storage: Storage,
    batch_id: str,
    engine_factory: EngineFactory = open_engine,
    run_id: str | None = None,
) -> tuple[pl.DataFrame, RunStats]:
    """`num_evolutions` rounds; each round is one stage-wide batch built on the previous one.
    With `keep: last` only the final round's rewrites are returned."""
    instructions = _instructions(storage, batch_id)
    parents = _rows(storage, "completions", batch_id, "completion_id")
    total = RunStats()
    rounds: list[list[dict[str, Any]]] = []
    for round_index in range(1, config.evol_quality.num_evolutions + 1):
        plans = planning.plan_evolution_round(parents, instructions, config, round_index, batch_id)
        answers = _ask(plans, storage, config, engine_factory, total, run_id)
        parents = [planning.answered_row(p, answers[p.request.call_id]) for p in plans]
        rounds.append(parents)
    kept = rounds[-1:] if config.evol_quality.keep == "last" else rounds
    rows = [row for round_rows in kept for row in round_rows]
    _embed(rows, config, {})
    return pl.DataFrame(rows, infer_schema_length=None), total


@dataclass
class Judged:
    """What the judging stage writes: the ratings (candidates, probes and canaries), the
    canaries it built, and the judge's calibration on them."""

    ratings: pl.DataFrame
    canaries: pl.DataFrame
    calibration: pl.DataFrame


def rate_completions(
    config: PipelineConfig,
    storage: Storage,
    batch_id: str,
    engine_factory: EngineFactory = open_engine,
    run_id: str | None = None,
) -> tuple[Judged, RunStats]:
    """Judge each instruction's completions (evolved ones, and the pooled originals unless
    `include_original` is off) per judge and aspect, in the configured mode, together with
    the batch's canaries and (listwise) a reversed look at a sample of instructions.

    An answer that does not parse is asked again (at most `max_reasks` times); after that its
    ratings are stored as NULL with the raw output and the parse status.
    """
    judge = config.judge
    total = RunStats()
    canaries = _canaries(config, storage, batch_id)
    canary_frame = pl.DataFrame([c.row(batch_id) for c in canaries], schema=CANARY_SCHEMA)
    if judge is None:
        empty = pl.DataFrame(schema=RATING_SCHEMA)
        return Judged(empty, canary_frame, calibrate(empty, canary_frame, "none", batch_id)), total
    originals = "completions" if config.evol_quality.include_original else None
    sources = [t for t in (originals, "evolved_completions") if t]
    candidates = storage.query(
        " UNION ALL ".join(
            f"SELECT completion_id, instruction_id, text FROM {t} WHERE batch_id = $b"
            for t in sources
        ),
        {"b": batch_id},
    ).to_dicts()
    groups = planning.judge_groups(candidates, canaries, config)
    instructions = _instructions(storage, batch_id)
    rows: list[dict[str, Any]] = []
    retry: set[planning.JudgeKey] | None = None
    for attempt in range(judge.max_reasks + 1):
        plans = planning.plan_judging(groups, instructions, config, attempt, retry)
        if not plans:
            break
        answers = _ask(plans, storage, config, engine_factory, total, run_id)
        retry = set()
        for plan in plans:
            raw = answers[plan.request.call_id]["response"]
            verdict = parse_verdict(
                judge.mode,
                raw,
                len(plan.row["completion_ids"]),
                allow_na=ASPECTS[plan.row["aspect"]].allows_na,
                with_rationale=judge.with_rationale,
            )
            if verdict.ok or attempt == judge.max_reasks:
                rows.extend(planning.rating_rows(plan, verdict, raw, config, batch_id))
            else:
                retry.add(plan.row["key"])
    ratings = pl.DataFrame(rows, schema=RATING_SCHEMA)
    calibration = calibrate(ratings, canary_frame, judge.mode, batch_id)
    return Judged(ratings, canary_frame, calibration), total


def _canaries(config: PipelineConfig, storage: Storage, batch_id: str) -> list[Canary]:
    """The batch's canaries, from its finished pooled completions."""
    judge = config.judge
    if judge is None or not judge.canaries.kinds:
        return []
    settings = judge.canaries
    completions = storage.query(
        "SELECT completion_id, instruction_id, model, text, finish_reason, repetition "
        "FROM completions WHERE batch_id = ?",
        [batch_id],
    ).to_dicts()
    return build_canaries(
        completions,
        settings.kinds,
        settings.fraction,
        settings.min_instructions,
        settings.seed,
        [planning.model_identity(config, name) for name in settings.source_models],
        config.ranked_identities(),
        config.pairing.max_repetition,
    )


CANARY_SCHEMA = {
    "batch_id": pl.String,
    "canary_id": pl.String,
    "instruction_id": pl.String,
    "kind": pl.String,
    "intact_id": pl.String,
    "corrupted_id": pl.String,
    "source_completion_id": pl.String,
    "source_model": pl.String,
    "corrupted_from_id": pl.String,
    "corrupted_text": pl.String,
    "corrupted_first": pl.Boolean,
}
RATING_SCHEMA = {
    "batch_id": pl.String,
    "completion_id": pl.String,
    "instruction_id": pl.String,
    "judge": pl.String,
    "aspect": pl.String,
    "judge_order": pl.Int64,
    "order_name": pl.String,
    "position": pl.Int64,
    "shown": pl.Int64,
    "rating": pl.Int64,
    "not_applicable": pl.Boolean,
    "rationale": pl.String,
    "raw_output": pl.String,
    "parse_status": pl.String,
    "attempts": pl.Int64,
    "call_id": pl.String,
    "judge_settings": pl.String,
    "purpose": pl.String,
    "mode": pl.String,
}
