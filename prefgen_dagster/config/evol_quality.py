"""`evol_quality:` the EvolQuality rewrites."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from prefgen_dagster.config.base import SamplingParams, Strict

EVOL_CRITERIA = ("helpfulness", "relevance", "deepening", "creativity", "details")


class EvolQualityConfig(Strict):
    model: str
    num_evolutions: int = Field(1, ge=0)
    criteria: list[str] = Field(default_factory=lambda: list(EVOL_CRITERIA))
    # Extra criteria: name -> what the rewrite should improve (usable in `criteria`).
    custom_criteria: dict[str, str] = Field(default_factory=dict)
    keep: Literal["all", "last"] = "all"
    # Whose answers are rewritten: pool members by their model's name (each member calling
    # it) or by their place in `generation.pool` (from 0). Unset: every member's. The
    # UltraFeedback recipe rewrites one answer per instruction: name one member.
    members: list[str | int] | None = Field(None, min_length=1)
    # Judge (and pair) the pooled originals alongside their rewrites.
    include_original: bool = True
    seed: int = 0
    sampling: SamplingParams = SamplingParams()

    @model_validator(mode="after")
    def _known_criteria(self) -> EvolQualityConfig:
        known = set(EVOL_CRITERIA) | set(self.custom_criteria)
        unknown = sorted(set(self.criteria) - known)
        if unknown or not self.criteria:
            raise ValueError(f"criteria must be a non-empty subset of {sorted(known)}: {unknown}")
        return self
