"""Pure planning of the pool's completions: which members answer, which requests, which rows."""

from __future__ import annotations

import json
from typing import Any

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.generation import prompt
from prefgen_dagster.ids import seed_from, stable_hash
from prefgen_dagster.llm.plan import Planned, model_identity
from prefgen_dagster.llm.types import LLMRequest
from prefgen_dagster.text.conversation import with_history


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
                messages = pool_messages(row, variants[variant])
                system_used = messages[0]["content"] if messages[0]["role"] == "system" else None
                completion_id = stable_hash(
                    [
                        "completion",
                        gen.seed,
                        row["instruction_id"],
                        identity,
                        sampling,
                        system_used,
                        prompt.TEMPLATE_VERSION,
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
                            "template_version": prompt.TEMPLATE_VERSION,
                            "regenerations": 0,
                        },
                    )
                )
    return plans


def pool_messages(row: dict[str, Any], pool_system_prompt: str | None) -> list[dict[str, str]]:
    """The messages a pool member gets for an instruction row: the template's, with a
    conversation's earlier turns before its last user turn."""
    return with_history(
        prompt.generation_messages(row["instruction"], row["system_prompt"], pool_system_prompt),
        row,
    )


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
