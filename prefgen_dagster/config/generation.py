"""`generation:` the pool of models that write the first completions."""

from __future__ import annotations

from pydantic import Field, model_validator

from prefgen_dagster.config.base import SamplingParams, Strict


class PoolMember(Strict):
    """One generator in the pool: a model plus how it is asked."""

    model: str
    num_completions: int = Field(1, gt=0)
    system_prompt: str | None = None
    # Several system prompts (e.g. one principle each: helpful, honest, truthful); each
    # completion gets one, drawn from the seed and the completion's identity.
    system_prompt_variants: list[str] = Field(default_factory=list)
    sampling: SamplingParams = SamplingParams()

    @model_validator(mode="after")
    def _one_way_to_set_system(self) -> PoolMember:
        if self.system_prompt and self.system_prompt_variants:
            raise ValueError("set system_prompt or system_prompt_variants, not both")
        return self

    def system_prompts(self) -> list[str | None]:
        return list(self.system_prompt_variants) or [self.system_prompt]


class DiversityConfig(Strict):
    """Regenerate a completion that is too close to an earlier one of the same instruction:
    cosine similarity of embeddings above `max_cosine` (see `PipelineConfig.embeddings`),
    else character 3-gram Jaccard similarity above `max_similarity`. 1.0 turns it off."""

    max_similarity: float = Field(0.9, gt=0, le=1)
    max_cosine: float = Field(0.95, gt=0, le=1)
    max_regenerations: int = Field(2, ge=0)
    temperature_step: float = Field(0.2, ge=0)


class GenerationConfig(Strict):
    pool: list[PoolMember] = Field(min_length=2)
    # Each instruction gets this many pool members, drawn from the seed and its id.
    models_per_instruction: int | None = Field(None, ge=1)
    seed: int = 0
    diversity: DiversityConfig = DiversityConfig()
    # Pool models from strongest to weakest, where known (e.g. a real model above a tiny
    # one): the `rule_stronger_model` pair rule and the `weaker_model` canary read it.
    # It shapes no completion.
    model_ranking: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _draw_fits_pool(self) -> GenerationConfig:
        if self.models_per_instruction and self.models_per_instruction > len(self.pool):
            raise ValueError("models_per_instruction is larger than the pool")
        members = {member.model for member in self.pool}
        ranking = self.model_ranking
        if ranking and (len(ranking) < 2 or len(set(ranking)) != len(ranking)):
            raise ValueError("generation.model_ranking needs two or more models, no repeats")
        if set(ranking) - members:
            raise ValueError(
                f"generation.model_ranking names models outside the pool: "
                f"{sorted(set(ranking) - members)}"
            )
        return self
