"""Pure planning of one EvolQuality round: one rewrite request per parent completion."""

from __future__ import annotations

import json
from typing import Any

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.evol_quality import prompt
from prefgen_dagster.ids import seed_from, stable_hash
from prefgen_dagster.llm.plan import Planned, model_identity
from prefgen_dagster.llm.types import LLMRequest
from prefgen_dagster.text.conversation import prompt_text


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
        criterion = prompt.choose_criterion(evol.seed, root_id, round_index, evol.criteria)
        completion_id = stable_hash(
            [
                "evolved",
                parent["completion_id"],
                identity,
                criterion,
                sampling,
                prompt.TEMPLATE_VERSION,
                round_index,
            ]
        )
        instruction = prompt_text(instructions[parent["instruction_id"]])
        messages = prompt.evol_messages(
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
                    "template_version": prompt.TEMPLATE_VERSION,
                },
            )
        )
    return plans
