"""The EvolQuality stage: rewrite each pooled completion round after round, each round one
stage-wide batch built on the previous one (the loop itself is `llm/driver.py`)."""

from __future__ import annotations

from typing import Any

import polars as pl

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.evol_quality import prompt
from prefgen_dagster.evol_quality.plan import plan_evolution_round
from prefgen_dagster.llm.plan import Planned, answered_row
from prefgen_dagster.llm.stage import Batch, LLMStage, Markdown, Report, Round, Work
from prefgen_dagster.stages import EVOL_QUALITY
from prefgen_dagster.storage.store import batch_instructions, batch_rows
from prefgen_dagster.summaries import counts_table
from prefgen_dagster.text.embeddings import embed_rows
from prefgen_dagster.text.quality import echoed_marker


class EvolutionWork(Work):
    """A pooled completion's chain of rewrites is a unit. Round r + 1 rewrites the answered
    rewrites of round r; with `keep: last` only the final round's rows are kept."""

    def __init__(
        self,
        plans: list[Planned],
        instructions: dict[str, dict[str, Any]],
        config: PipelineConfig,
        batch_id: str,
    ) -> None:
        self.plans = plans
        self.rounds = config.evol_quality.num_evolutions
        self.instructions = instructions
        self.config = config
        self.batch_id = batch_id

    def unit_of(self, plan: Planned) -> str:
        return plan.row["root_completion_id"]

    def answered(
        self, plans: list[Planned], answers: dict[str, dict[str, Any]], attempt: int
    ) -> Round:
        rows = [answered_row(p, answers[p.request.call_id]) for p in plans]
        for row in rows:
            row["echoed_marker"] = echoed_marker(row["text"], tuple(prompt.HEADINGS.values()))
        done = [row for row in rows if row["error"] is None]
        last = attempt == self.rounds - 1
        kept = last or self.config.evol_quality.keep == "all"
        if kept:
            embed_rows(done, self.config.uses_embeddings(), {})
        # A rewrite whose request failed for good has nothing to rewrite further.
        follow_up = (
            []
            if last
            else plan_evolution_round(
                done, self.instructions, self.config, attempt + 2, self.batch_id
            )
        )
        return Round(rows=list(zip(plans, rows, strict=True)) if kept else [], follow_up=follow_up)


class EvolQualityStage(LLMStage):
    """EvolQuality rewrites of the pooled completions (of `evol_quality.members`, if set),
    `num_evolutions` rounds deep. A
    rewrite whose request failed for good is returned with its error and no text, and is
    not rewritten further."""

    spec = EVOL_QUALITY
    deps = ("completions",)
    preview = ("mutation", "round", "text")

    def work(self, batch: Batch) -> EvolutionWork:
        instructions = batch_instructions(batch.storage, batch.batch_id)
        # A text whose request failed has nothing to rewrite; its row says why.
        completions = batch_rows(batch.storage, "completions", batch.batch_id, "completion_id")
        members = batch.config.evolved_members()
        parents = [
            row for row in completions if row["error"] is None and row["pool_member"] in members
        ]
        plans = plan_evolution_round(parents, instructions, batch.config, 1, batch.batch_id)
        return EvolutionWork(plans, instructions, batch.config, batch.batch_id)

    def report(self, outputs: dict[str, pl.DataFrame], batch: Batch) -> Report:
        frame = outputs[self.spec.table]
        if not frame.height:
            return Report()
        return Report({"mutations": Markdown(counts_table(frame["mutation"], "mutation"))})


STAGE = EvolQualityStage()
