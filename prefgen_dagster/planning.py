"""Pure planning for each LLM stage: which requests to make, and the rows their answers give.

Nothing here talks to an engine, DuckDB or Dagster; `stages.py` runs the plans.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from prefgen_dagster.config import PipelineConfig, SamplingParams
from prefgen_dagster.engines.base import LLMRequest
from prefgen_dagster.ids import seed_from, stable_hash
from prefgen_dagster.judge_parsing import JudgeVerdict
from prefgen_dagster.prompts import evol_quality, generation, ultrafeedback


@dataclass(frozen=True)
class Planned:
    """One request and the row fields known before it is answered."""

    model_name: str
    request: LLMRequest
    row: dict[str, Any]


def model_identity(config: PipelineConfig, name: str) -> str:
    """What a model is, for ids and the cache: its path or hub name as written in config."""
    return config.models[name].path


def answered_row(plan: Planned, answer: dict[str, Any]) -> dict[str, Any]:
    """The planned row completed with the engine's answer."""
    return {
        **plan.row,
        "text": answer["response"],
        "finish_reason": answer["finish_reason"],
        "prompt_tokens": answer["prompt_tokens"],
        "completion_tokens": answer["completion_tokens"],
        "call_id": plan.request.call_id,
    }


def plan_completions(
    instructions: list[dict[str, Any]], config: PipelineConfig, batch_id: str
) -> list[Planned]:
    """`num_completions` requests per pool member per instruction."""
    plans = []
    for row in instructions:
        for member in config.generation.pool:
            identity = model_identity(config, member.model)
            messages = generation.generation_messages(
                row["instruction"], row["system_prompt"], member.system_prompt
            )
            system_used = messages[0]["content"] if messages[0]["role"] == "system" else None
            sampling = member.sampling.model_dump(mode="json")
            for sample_index in range(member.num_completions):
                completion_id = stable_hash(
                    [
                        "completion",
                        config.generation.seed,
                        row["instruction_id"],
                        identity,
                        sampling,
                        system_used,
                        generation.TEMPLATE_VERSION,
                        sample_index,
                    ]
                )
                seed = seed_from("generation", config.generation.seed, completion_id)
                plans.append(
                    Planned(
                        member.model,
                        LLMRequest(identity, messages, member.sampling, seed),
                        {
                            "batch_id": batch_id,
                            "completion_id": completion_id,
                            "instruction_id": row["instruction_id"],
                            "model": identity,
                            "backend": config.models[member.model].backend,
                            "system_prompt": system_used,
                            "sampling": json.dumps(sampling, sort_keys=True),
                            "sample_index": sample_index,
                            "template_version": generation.TEMPLATE_VERSION,
                        },
                    )
                )
    return plans


def plan_evolution_round(
    parents: list[dict[str, Any]],
    instructions: dict[str, dict[str, Any]],
    config: PipelineConfig,
    round_index: int,
    batch_id: str,
) -> list[Planned]:
    """One EvolQuality rewrite per parent; round 1 parents are the pooled completions."""
    evol = config.evol_quality
    identity = model_identity(config, evol.model)
    sampling = evol.sampling.model_dump(mode="json")
    plans = []
    for parent in parents:
        root_id = parent.get("root_completion_id") or parent["completion_id"]
        criterion = evol_quality.choose_criterion(evol.seed, root_id, round_index, evol.criteria)
        completion_id = stable_hash(
            [
                "evolved",
                parent["completion_id"],
                identity,
                criterion,
                sampling,
                evol_quality.TEMPLATE_VERSION,
                round_index,
            ]
        )
        instruction = instructions[parent["instruction_id"]]["instruction"]
        messages = evol_quality.evol_messages(instruction, parent["text"] or "", criterion)
        plans.append(
            Planned(
                evol.model,
                LLMRequest(identity, messages, evol.sampling, seed_from("evol", completion_id)),
                {
                    "batch_id": batch_id,
                    "completion_id": completion_id,
                    "instruction_id": parent["instruction_id"],
                    "parent_completion_id": parent["completion_id"],
                    "root_completion_id": root_id,
                    "model": identity,
                    "mutation": criterion,
                    "round": round_index,
                    "sampling": json.dumps(sampling, sort_keys=True),
                    "template_version": evol_quality.TEMPLATE_VERSION,
                },
            )
        )
    return plans


def judge_settings(config: PipelineConfig) -> str:
    return stable_hash(
        [config.judge.model_dump(mode="json"), model_identity(config, config.judge.model)]
    )


def plan_judging(
    candidates: list[dict[str, Any]],
    instructions: dict[str, dict[str, Any]],
    config: PipelineConfig,
    attempt: int,
) -> list[Planned]:
    """One request per instruction rating all its completions, in completion-id order.

    Re-asks (`attempt` > 0) use a new seed and some temperature, or they would repeat the
    answer that failed to parse.
    """
    judge = config.judge
    identity = model_identity(config, judge.model)
    by_instruction: dict[str, list[dict[str, Any]]] = {}
    for candidate in sorted(candidates, key=lambda c: c["completion_id"]):
        by_instruction.setdefault(candidate["instruction_id"], []).append(candidate)
    sampling = judge.sampling
    if attempt > 0:
        sampling = SamplingParams(
            temperature=max(sampling.temperature, 0.7),
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
        )
    plans = []
    for instruction_id, group in sorted(by_instruction.items()):
        messages = ultrafeedback.judge_messages(
            instructions[instruction_id]["instruction"], [c["text"] or "" for c in group]
        )
        schema = ultrafeedback.judge_schema(len(group), judge.rationale_max_chars)
        seed = seed_from("judge", judge.seed, instruction_id, attempt)
        plans.append(
            Planned(
                judge.model,
                LLMRequest(identity, messages, sampling, seed, json_schema=schema),
                {
                    "instruction_id": instruction_id,
                    "completion_ids": [c["completion_id"] for c in group],
                    "attempt": attempt,
                },
            )
        )
    return plans


def rating_rows(
    plan: Planned,
    verdict: JudgeVerdict,
    raw_output: str | None,
    config: PipelineConfig,
    batch_id: str,
) -> list[dict[str, Any]]:
    """One `ratings` row per judged completion; a failed parse gives NULL ratings."""
    settings = judge_settings(config)
    return [
        {
            "batch_id": batch_id,
            "completion_id": completion_id,
            "instruction_id": plan.row["instruction_id"],
            "judge": plan.request.model,
            "aspect": config.judge.aspect,
            "judge_order": 0,
            "position": position,
            "rating": verdict.ratings[position - 1],
            "rationale": verdict.rationales[position - 1],
            "raw_output": raw_output,
            "parse_status": verdict.status,
            "attempts": plan.row["attempt"] + 1,
            "call_id": plan.request.call_id,
            "judge_settings": settings,
        }
        for position, completion_id in enumerate(plan.row["completion_ids"], start=1)
    ]
