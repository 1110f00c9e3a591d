"""The judging stage: build the canaries, plan every group's requests, turn answers into
rating rows (re-asking what does not parse), measure the judge (the loop itself is
`llm/driver.py`; what it reports, `judge/report.py`)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import polars as pl

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.config.judge import CanaryConfig
from prefgen_dagster.judge.calibration import calibrate
from prefgen_dagster.judge.canaries import Canary, build_canaries
from prefgen_dagster.judge.modes import MODES
from prefgen_dagster.judge.parse import REQUEST_FAILED, failed
from prefgen_dagster.judge.plan import (
    JudgeGroup,
    JudgeKey,
    judge_groups,
    plan_judging,
    rating_rows,
)
from prefgen_dagster.judge.prompt import ASPECTS
from prefgen_dagster.judge.report import judging_report
from prefgen_dagster.judge.reward import rated_by_scores
from prefgen_dagster.llm.plan import Planned, model_identity
from prefgen_dagster.llm.stage import Batch, LLMStage, Report, Round, Work
from prefgen_dagster.stages import JUDGE
from prefgen_dagster.storage.schema import TABLES
from prefgen_dagster.storage.store import Storage, batch_instructions


class JudgingWork(Work):
    """A group a judge compares (each judge, aspect and order of it) is a unit. An answer
    that does not parse is asked again (at most `max_reasks` times); after that its ratings
    are stored as NULL with the raw output and the parse status. A request that failed for
    good gives NULL ratings with parse status `request_failed` and the error."""

    def __init__(
        self,
        groups: list[JudgeGroup],
        instructions: dict[str, dict[str, Any]],
        canaries: pl.DataFrame,
        config: PipelineConfig,
        batch_id: str,
    ) -> None:
        self.groups = groups
        self.instructions = instructions
        self.canaries = canaries
        self.config = config
        self.batch_id = batch_id
        self.plans = plan_judging(groups, instructions, config, 0)
        self.rounds = config.judge.max_reasks + 1 if config.judge else 0

    def unit_of(self, plan: Planned) -> tuple[str, str]:
        """(purpose, group id) from the request's key."""
        return plan.row.key[0], plan.row.key[1]

    def identity(self, plan: Planned) -> tuple[str, list[str]]:
        return plan.request.call_id, plan.row.completion_ids

    def start(self, todo: set[Hashable]) -> list[Planned]:
        self.groups = [group for group in self.groups if (group.purpose, group.group_id) in todo]
        return super().start(todo)

    def answered(
        self, plans: list[Planned], answers: dict[str, dict[str, Any]], attempt: int
    ) -> Round:
        judge, config, batch_id = self.config.judge, self.config, self.batch_id
        assert judge is not None  # no judge, no plans
        done = Round()
        again: set[JudgeKey] = set()
        last = attempt == self.rounds - 1
        for plan in plans:
            answer = answers[plan.request.call_id]
            if "error" in answer:  # failed after the engine's retries: nothing to parse
                verdict = failed(len(plan.row.completion_ids), REQUEST_FAILED)
                done.rows += [
                    (plan, {**row, "error": answer["error"]})
                    for row in rating_rows(plan, verdict, None, config, batch_id)
                ]
                continue
            raw = answer["response"]
            verdict = MODES[plan.row.mode].parse(
                raw,
                len(plan.row.completion_ids),
                allow_na=ASPECTS[plan.row.aspect].allows_na,
                with_rationale=judge.with_rationale,
            )
            if verdict.ok or last:
                done.rows += [
                    (plan, row) for row in rating_rows(plan, verdict, raw, config, batch_id)
                ]
            else:
                again.add(plan.row.key)
        if again:
            done.follow_up = plan_judging(
                self.groups, self.instructions, config, attempt + 1, again
            )
        return done


class JudgeStage(LLMStage):
    """Judge each instruction's completions (evolved ones, and the pooled originals unless
    `include_original` is off) per judge and aspect, in the configured mode, together with
    the batch's canaries and (listwise) a reversed look at a sample of instructions; then
    measure the judge on them (`judge_calibration`, over kept and new ratings alike)."""

    spec = JUDGE
    # The texts it rates: the `candidates` SQL model (pooled and evolved completions).
    deps = ("candidates",)
    preview = ("purpose", "position", "rating", "rationale")

    def work(self, batch: Batch) -> JudgingWork:
        config, storage, batch_id = batch.config, batch.storage, batch.batch_id
        judge = config.judge
        if judge is None:  # no ratings, and no canaries to rate
            return JudgingWork([], {}, TABLES["canaries"].frame([]), config, batch_id)
        # The texts that can be paired; the pooled originals only when they are paired too.
        originals = "" if config.evol_quality.include_original else " AND origin = 'evolved'"
        canaries = _canaries(config, judge.canaries, storage, batch_id)
        candidates = storage.query(
            "SELECT completion_id, instruction_id, text FROM candidates WHERE batch_id = ?"
            + originals,
            [batch_id],
        ).to_dicts()
        return JudgingWork(
            judge_groups(candidates, canaries, config),
            batch_instructions(storage, batch_id),
            TABLES["canaries"].frame(c.row(batch_id) for c in canaries),
            config,
            batch_id,
        )

    def outputs(self, frame: pl.DataFrame, work: Work, batch: Batch) -> dict[str, pl.DataFrame]:
        assert isinstance(work, JudgingWork)
        ratings = rated_by_scores(frame)
        return {
            "ratings": ratings,
            "canaries": work.canaries,
            "judge_calibration": calibrate(ratings, work.canaries, batch.batch_id),
        }

    def warnings(self, config: PipelineConfig) -> list[str]:
        self_judging = config.self_judging()
        if not self_judging:
            return []
        return [
            f"judge(s) {self_judging} also generate completions or rewrites; LLM judges tend "
            "to prefer their own text (self-preference bias). Consider a judge outside the pool."
        ]

    def report(self, outputs: dict[str, pl.DataFrame], batch: Batch) -> Report:
        return judging_report(outputs, batch)


STAGE = JudgeStage()


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
