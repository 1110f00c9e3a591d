"""Pure planning for each LLM stage: which requests to make, and the rows their answers give.

Nothing here talks to an engine, DuckDB or Dagster; `stages.py` runs the plans.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from prefgen_dagster.config import PipelineConfig
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


def draw_pool(pool_size: int, k: int | None, seed: int, instruction_id: str) -> list[int]:
    """Which pool members answer an instruction: k of them, fixed by the seed and the
    instruction's id alone (so the draw is the same whatever batch it comes in)."""
    if k is None or k >= pool_size:
        return list(range(pool_size))
    ranked = sorted(range(pool_size), key=lambda i: seed_from("pool", seed, instruction_id, i))
    return sorted(ranked[:k])


def plan_completions(
    instructions: list[dict[str, Any]], config: PipelineConfig, batch_id: str
) -> list[Planned]:
    """`num_completions` requests per drawn pool member per instruction."""
    gen = config.generation
    plans = []
    for row in instructions:
        for member_index in draw_pool(
            len(gen.pool), gen.models_per_instruction, gen.seed, row["instruction_id"]
        ):
            member = gen.pool[member_index]
            identity = model_identity(config, member.model)
            sampling = member.sampling.model_dump(mode="json")
            variants = member.system_prompts()
            for sample_index in range(member.num_completions):
                variant = seed_from(
                    "variant", gen.seed, row["instruction_id"], member_index, sample_index
                ) % len(variants)
                messages = generation.generation_messages(
                    row["instruction"], row["system_prompt"], variants[variant]
                )
                system_used = messages[0]["content"] if messages[0]["role"] == "system" else None
                completion_id = stable_hash(
                    [
                        "completion",
                        gen.seed,
                        row["instruction_id"],
                        identity,
                        sampling,
                        system_used,
                        generation.TEMPLATE_VERSION,
                        sample_index,
                    ]
                )
                seed = seed_from("generation", completion_id)
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
                            "pool_member": member_index,
                            "system_prompt": system_used,
                            # None when there is no choice, or the instruction's own
                            # system prompt replaced the variant.
                            "system_variant": variant
                            if len(variants) > 1 and not row["system_prompt"]
                            else None,
                            "sampling": json.dumps(sampling, sort_keys=True),
                            "sample_index": sample_index,
                            "template_version": generation.TEMPLATE_VERSION,
                            "regenerations": 0,
                        },
                    )
                )
    return plans


def regeneration(plan: Planned, attempt: int, temperature_step: float) -> Planned:
    """The same completion slot asked again with a new seed and a warmer temperature, used
    when its first answer was too close to an earlier completion of the instruction."""
    request = plan.request
    sampling = request.sampling.model_copy(
        update={"temperature": min(request.sampling.temperature + temperature_step * attempt, 2.0)}
    )
    seed = seed_from("regenerate", plan.row["completion_id"], attempt)
    return Planned(
        plan.model_name,
        LLMRequest(request.model, request.messages, sampling, seed),
        {**plan.row, "regenerations": attempt},
    )


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
        messages = evol_quality.evol_messages(
            instruction, parent["text"] or "", criterion, evol.custom_criteria
        )
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
    identities = [model_identity(config, name) for name in config.judge.models]
    return stable_hash([config.judge.model_dump(mode="json"), identities])


def ordered(items: list[Any], order: str) -> list[Any]:
    """The items in one of the judge orders: as given, reversed, or rotated by half."""
    if order == "reversed":
        return items[::-1]
    if order == "rotated" and items:
        shift = max(1, len(items) // 2)
        return items[shift:] + items[:shift]
    return list(items)


JudgeKey = tuple[str, str, str, int]  # instruction_id, judge model name, aspect, order index


def plan_judging(
    candidates: list[dict[str, Any]],
    instructions: dict[str, dict[str, Any]],
    config: PipelineConfig,
    attempt: int,
    only: set[JudgeKey] | None = None,
) -> list[Planned]:
    """One request per instruction x judge x aspect x order, rating all the instruction's
    completions together (base order: by completion id).

    Re-asks (`attempt` > 0, limited to the keys in `only`) use a new seed and some
    temperature, or they would repeat the answer that failed to parse.
    """
    judge = config.judge
    by_instruction: dict[str, list[dict[str, Any]]] = {}
    for candidate in sorted(candidates, key=lambda c: c["completion_id"]):
        by_instruction.setdefault(candidate["instruction_id"], []).append(candidate)
    sampling = judge.sampling
    if attempt > 0:
        sampling = sampling.model_copy(update={"temperature": max(sampling.temperature, 0.7)})
    plans = []
    for instruction_id, group in sorted(by_instruction.items()):
        text = instructions[instruction_id]["instruction"]
        for judge_name in judge.models:
            identity = model_identity(config, judge_name)
            for aspect in judge.aspects:
                schema = ultrafeedback.judge_schema(
                    len(group), judge.rationale_max_chars, aspect, judge.with_rationale
                )
                for order_index, order in enumerate(judge.orders):
                    key = (instruction_id, judge_name, aspect, order_index)
                    if only is not None and key not in only:
                        continue
                    shown = ordered(group, order)
                    messages = ultrafeedback.judge_messages(
                        text, [c["text"] or "" for c in shown], aspect, judge.with_rationale
                    )
                    seed = seed_from("judge", judge.seed, *key, identity, attempt)
                    plans.append(
                        Planned(
                            judge_name,
                            LLMRequest(identity, messages, sampling, seed, json_schema=schema),
                            {
                                "key": key,
                                "instruction_id": instruction_id,
                                "completion_ids": [c["completion_id"] for c in shown],
                                "aspect": aspect,
                                "judge_order": order_index,
                                "order_name": order,
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
            "aspect": plan.row["aspect"],
            "judge_order": plan.row["judge_order"],
            "order_name": plan.row["order_name"],
            "position": position,
            "rating": verdict.ratings[position - 1],
            "not_applicable": verdict.is_na(position - 1),
            "rationale": verdict.rationales[position - 1],
            "raw_output": raw_output,
            "parse_status": verdict.status,
            "attempts": plan.row["attempt"] + 1,
            "call_id": plan.request.call_id,
            "judge_settings": settings,
        }
        for position, completion_id in enumerate(plan.row["completion_ids"], start=1)
    ]
