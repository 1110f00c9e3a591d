"""The judging stage end to end: build the canaries, plan every group's requests, ask (and
re-ask what does not parse), turn answers into rating rows, measure the judge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.config.judging import CanaryConfig
from prefgen_dagster.judging.calibration import calibrate
from prefgen_dagster.judging.canaries import Canary, build_canaries
from prefgen_dagster.judging.parse import REQUEST_FAILED, failed, parse_verdict
from prefgen_dagster.judging.plan import JudgeKey, judge_groups, plan_judging, rating_rows
from prefgen_dagster.judging.prompt import ASPECTS
from prefgen_dagster.llm.plan import Planned, model_identity
from prefgen_dagster.llm.pool import EnginePool
from prefgen_dagster.llm.reuse import keep, stored_units, unit_keys, with_kept
from prefgen_dagster.llm.runner import RunStats, ask
from prefgen_dagster.stages import JUDGING
from prefgen_dagster.storage.schema import TABLES
from prefgen_dagster.storage.store import Storage, batch_instructions


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
    engines: EnginePool,
    run_id: str | None = None,
) -> tuple[Judged, RunStats]:
    """Judge each instruction's completions (evolved ones, and the pooled originals unless
    `include_original` is off) per judge and aspect, in the configured mode, together with
    the batch's canaries and (listwise) a reversed look at a sample of instructions.

    An answer that does not parse is asked again (at most `max_reasks` times); after that its
    ratings are stored as NULL with the raw output and the parse status. A request that
    failed for good gives NULL ratings with parse status `request_failed` and the error.
    The ratings of groups whose requests and settings are unchanged since the stored ones
    are kept (`llm/reuse.py`); the calibration is measured on all of them.
    """
    judge = config.judge
    total = RunStats()
    if judge is None:  # no ratings, and no canaries to rate
        empty, no_canaries = TABLES["ratings"].frame([]), TABLES["canaries"].frame([])
        return Judged(empty, no_canaries, calibrate(empty, no_canaries, "none", batch_id)), total
    # The texts that can be paired (the `candidates` SQL model); the pooled originals only
    # when they are paired too.
    originals = "" if config.evol_quality.include_original else " AND origin = 'evolved'"
    with storage.session():  # one connection for the stage's reads
        canaries = _canaries(config, judge.canaries, storage, batch_id)
        candidates = storage.query(
            "SELECT completion_id, instruction_id, text FROM candidates WHERE batch_id = ?"
            + originals,
            [batch_id],
        ).to_dicts()
        instructions = batch_instructions(storage, batch_id)
        stored = stored_units(storage, JUDGING.table, batch_id)
    groups = judge_groups(candidates, canaries, config)
    plans = plan_judging(groups, instructions, config, 0)
    # A group a judge compares (each judge, aspect and order of it) is a unit.
    keys = unit_keys(plans, _group, JUDGING.code_version(config), _call_and_texts)
    kept = keep(stored, keys)
    total.reused = kept.requests
    canary_frame = TABLES["canaries"].frame(c.row(batch_id) for c in canaries)
    groups = [group for group in groups if (group.purpose, group.group_id) in kept.todo]
    plans = [plan for plan in plans if _group(plan) in kept.todo]
    rows: list[dict[str, Any]] = []
    retry: set[JudgeKey] | None = None
    for attempt in range(judge.max_reasks + 1):
        if attempt > 0:
            plans = plan_judging(groups, instructions, config, attempt, retry)
        if not plans:
            break
        answers = ask(plans, storage, config, engines, total, run_id)
        retry = set()
        for plan in plans:
            answer = answers[plan.request.call_id]
            unit = {"plan_key": keys[_group(plan)]}
            if "error" in answer:  # failed after the engine's retries: nothing to parse
                verdict = failed(len(plan.row.completion_ids), REQUEST_FAILED)
                rows.extend(
                    {**row, **unit, "error": answer["error"]}
                    for row in rating_rows(plan, verdict, None, config, batch_id)
                )
                continue
            raw = answer["response"]
            verdict = parse_verdict(
                judge.mode,
                raw,
                len(plan.row.completion_ids),
                allow_na=ASPECTS[plan.row.aspect].allows_na,
                with_rationale=judge.with_rationale,
            )
            if verdict.ok or attempt == judge.max_reasks:
                rows.extend(
                    {**row, **unit} for row in rating_rows(plan, verdict, raw, config, batch_id)
                )
            else:
                retry.add(plan.row.key)
    ratings = with_kept(kept, JUDGING.table, rows)
    calibration = calibrate(ratings, canary_frame, judge.mode, batch_id)
    return Judged(ratings, canary_frame, calibration), total


def _group(plan: Planned) -> tuple[str, str]:
    """(purpose, group id) from the request's key."""
    return plan.row.key[0], plan.row.key[1]


def _call_and_texts(plan: Planned) -> tuple[str, list[str]]:
    return plan.request.call_id, plan.row.completion_ids


def _canaries(
    config: PipelineConfig, settings: CanaryConfig, storage: Storage, batch_id: str
) -> list[Canary]:
    """The batch's canaries, from its finished pooled completions."""
    if not settings.kinds:
        return []
    completions = storage.query(
        "SELECT completion_id, instruction_id, model, text, finish_reason, repetition, "
        "echoed_marker FROM completions WHERE batch_id = ? AND error IS NULL",
        [batch_id],
    ).to_dicts()
    return build_canaries(
        completions,
        settings.kinds,
        settings.fraction,
        settings.min_instructions,
        settings.seed,
        [model_identity(config, name) for name in settings.source_models],
        config.ranked_identities(),
        config.pairing.max_repetition,
    )
