"""A planned LLM request and the row it will give: shared by every LLM stage's planner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.llm.types import LLMRequest
from prefgen_dagster.text.quality import repetition

Row = TypeVar("Row")


@dataclass(frozen=True)
class Planned(Generic[Row]):
    """One request and what its stage knows of it before it is answered: the output row's
    fields (generation, evolution) or what the request is for (judging, `JudgeSlot`)."""

    model_name: str
    request: LLMRequest
    row: Row


def model_identity(config: PipelineConfig, name: str) -> str:
    """What a model is, for ids and the cache: its path or hub name as written in config."""
    return config.models[name].path


def answered_row(plan: Planned[dict[str, Any]], answer: dict[str, Any]) -> dict[str, Any]:
    """The planned row completed with the engine's answer, or, for a request that failed
    for good, with no text and the `error`."""
    return {
        **plan.row,
        "text": answer.get("response"),
        "finish_reason": answer.get("finish_reason"),
        "prompt_tokens": answer.get("prompt_tokens"),
        "completion_tokens": answer.get("completion_tokens"),
        "call_id": plan.request.call_id,
        "repetition": repetition(answer.get("response")),
        "error": answer.get("error"),
    }
