"""An instruction-clarity scorer: the pool's first model rates each instruction 1-5; an
answer that is not one digit is asked again (twice at most), then stored unscored. All a
new LLM stage needs besides this folder is its line in `defs/assets.LLM_STAGES`."""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.config.base import SamplingParams
from prefgen_dagster.ids import seed_from
from prefgen_dagster.llm.plan import Planned, model_identity
from prefgen_dagster.llm.stage import Batch, LLMStage, Report, Round, Work
from prefgen_dagster.llm.types import LLMRequest
from prefgen_dagster.stages import Stage
from prefgen_dagster.storage.store import batch_instructions

ASK = "Rate how clear this instruction is, from 1 to 5. Answer with the digit alone.\n\n"
AGAIN = "Your last answer was not one digit from 1 to 5. "
REASKS = 2
_DIGIT = re.compile(r"^\s*([1-5])\s*$")


def plan_score(config: PipelineConfig, instruction: dict[str, Any], attempt: int) -> Planned:
    model = config.generation.pool[0].model
    text = (AGAIN if attempt else "") + ASK + instruction["instruction"]
    request = LLMRequest(
        model_identity(config, model),
        [{"role": "user", "content": text}],
        SamplingParams(temperature=0.2 * attempt, max_tokens=4),
        seed_from("clarity", instruction["instruction_id"], attempt),
    )
    return Planned(model, request, {"instruction": instruction, "attempt": attempt})


class ScoreWork(Work):
    def __init__(self, instructions: list[dict[str, Any]], config: PipelineConfig) -> None:
        self.config = config
        self.plans = [plan_score(config, row, 0) for row in instructions]
        self.rounds = REASKS + 1

    def unit_of(self, plan: Planned) -> str:
        return plan.row["instruction"]["instruction_id"]

    def answered(
        self, plans: list[Planned], answers: dict[str, dict[str, Any]], attempt: int
    ) -> Round:
        done = Round()
        for plan in plans:
            answer = answers[plan.request.call_id]
            raw = answer.get("response")
            digit = _DIGIT.match(raw or "")
            if digit or "error" in answer or attempt == self.rounds - 1:
                instruction = plan.row["instruction"]
                row = {
                    "batch_id": instruction["batch_id"],
                    "instruction_id": instruction["instruction_id"],
                    "score": int(digit.group(1)) if digit else None,
                    "raw": raw,
                    "attempts": attempt + 1,
                    "call_id": plan.request.call_id,
                    "error": answer.get("error"),
                }
                done.rows.append((plan, row))
            else:
                done.follow_up.append(plan_score(self.config, plan.row["instruction"], attempt + 1))
        return done


class ClarityStage(LLMStage):
    """How clear each instruction is, 1-5, by the pool's first model."""

    spec = Stage("generation", ("instruction_scores",), {}, home=__package__)
    deps = ("instructions",)
    preview = ("score", "raw")

    def work(self, batch: Batch) -> ScoreWork:
        instructions = batch_instructions(batch.storage, batch.batch_id)
        return ScoreWork(list(instructions.values()), batch.config)

    def frame(self, rows: list[dict[str, Any]]) -> pl.DataFrame:
        schema = {"score": pl.Int64, "raw": pl.String, "error": pl.String}
        return pl.DataFrame(rows, schema_overrides=schema)

    def report(self, outputs: dict[str, pl.DataFrame], batch: Batch) -> Report:
        scores = outputs[self.spec.table]["score"]
        return Report({"mean_score": scores.mean()}, [f"{scores.null_count()} unscored"])


STAGE = ClarityStage()
