"""A planned LLM request and the row it will give: shared by every LLM stage's planner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.llm.types import LLMRequest
from prefgen_dagster.text.quality import repetition


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
        "repetition": repetition(answer["response"]),
    }
