"""The values the SQL files may read with `{{ var('name') }}`, from the config: the pair
rule's settings, the checks' bounds, what people's verdicts do, and the settings hash that
stamps the pairs."""

from __future__ import annotations

from typing import Any

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.stages import pipeline_hash


def sql_vars(config: PipelineConfig) -> dict[str, Any]:
    """Every var a model or check may read, by name."""
    return {
        "settings_hash": pipeline_hash(config),
        "min_margin": config.pairing.min_margin,
        "strategy": config.pairing.strategy,
        "judge_decides": config.pairing.judge_decides(),
        "canaries_enabled": bool(
            config.judge and config.judge.canaries.kinds and config.judge.canaries.fraction > 0
        ),
        "max_repetition": config.pairing.max_repetition,
        "model_ranking": config.ranked_identities(),
        "pairing_seed": config.pairing.seed,
        **config.checks.model_dump(),
        # What people's verdicts do: the corrections in candidate_pairs and the
        # judge_human_agreement gate.
        "on_disagreement": config.review.on_disagreement,
        "min_verdicts": config.review.min_verdicts,
        "min_agreement": config.review.min_agreement,
    }
