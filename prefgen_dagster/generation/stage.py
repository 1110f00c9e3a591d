"""The generation stage: plan each instruction's completions, ask the pool, guard diversity
(the loop itself is `llm/driver.py`)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import polars as pl

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.generation.diversity import max_similarity_to_earlier
from prefgen_dagster.generation.plan import plan_completions, regeneration
from prefgen_dagster.llm.plan import Planned, answered_row
from prefgen_dagster.llm.stage import Batch, LLMStage, Markdown, Report, Round, Work
from prefgen_dagster.stages import GENERATION
from prefgen_dagster.storage.store import batch_instructions
from prefgen_dagster.summaries import counts_table, histogram
from prefgen_dagster.text.embeddings import embed_rows
from prefgen_dagster.text.quality import echoed_marker


class GenerationWork(Work):
    """An instruction is a unit: the diversity guard compares its completions with each
    other. Rounds after the first regenerate the completions that came out too close to an
    earlier one of their instruction; the rows are made when the guard is done."""

    def __init__(self, plans: list[Planned], config: PipelineConfig) -> None:
        diversity = config.generation.diversity
        self.plans = plans
        self.rounds = diversity.max_regenerations + 1
        self.config = config
        self.threshold = (
            diversity.max_cosine if config.uses_embeddings() else diversity.max_similarity
        )
        self.first: list[Planned] = []
        self.current: list[Planned] = []  # each slot's latest request
        self.answers: dict[str, dict[str, Any]] = {}
        self.vectors: dict[str, list[float]] = {}

    def unit_of(self, plan: Planned) -> str:
        return plan.row["instruction_id"]

    def identity(self, plan: Planned) -> tuple[str, str]:
        return plan.request.call_id, plan.row["completion_id"]

    def start(self, todo: set[Hashable]) -> list[Planned]:
        self.first = self.current = super().start(todo)
        return self.first

    def answered(
        self, plans: list[Planned], answers: dict[str, dict[str, Any]], attempt: int
    ) -> Round:
        self.answers |= answers
        rows = [answered_row(p, self.answers[p.request.call_id]) for p in self.current]
        answered = [row for row in rows if row["error"] is None]
        for row in rows:
            row["echoed_marker"] = echoed_marker(row["text"])
            row["similarity"], row["too_similar"] = None, False  # set below if answered
        embed_rows(answered, self.config.uses_embeddings(), self.vectors)
        _mark_similarity(answered, self.threshold)
        if attempt == self.rounds - 1 or not any(row["too_similar"] for row in rows):
            return Round(rows=list(zip(self.current, rows, strict=True)))
        step = self.config.generation.diversity.temperature_step
        again = [
            regeneration(first, attempt + 1, step)
            for first, row in zip(self.first, rows, strict=True)
            if row["too_similar"]
        ]
        regenerated = {plan.row["completion_id"]: plan for plan in again}
        self.current = [regenerated.get(p.row["completion_id"], p) for p in self.current]
        return Round(follow_up=again)


class GenerationStage(LLMStage):
    """The pool's completions, with the diversity guard: a completion too close to an
    earlier one of the same instruction is asked again (new seed, warmer), at most
    `max_regenerations` times; its final similarity is stored either way (and its
    embedding, with embeddings on). A request that failed for good keeps its row, with the
    error and no text; it is not compared with the others."""

    spec = GENERATION
    deps = ("instructions",)
    preview = ("model", "similarity", "text")

    def work(self, batch: Batch) -> GenerationWork:
        instructions = list(batch_instructions(batch.storage, batch.batch_id).values())
        plans = plan_completions(instructions, batch.config, batch.batch_id)
        return GenerationWork(plans, batch.config)

    def report(self, outputs: dict[str, pl.DataFrame], batch: Batch) -> Report:
        frame = outputs[self.spec.table]
        if not frame.height:
            return Report()
        return Report(
            {
                "models": Markdown(counts_table(frame["model"], "model")),
                "similarity_histogram": histogram(frame["similarity"].to_list(), 0.1),
                "too_similar_kept": int(frame["too_similar"].sum()),
                "regenerated": int((frame["regenerations"] > 0).sum()),
            }
        )


STAGE = GenerationStage()


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
