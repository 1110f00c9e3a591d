"""`pairing:` the pair rule, and `checks:` the thresholds the SQL reads."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from prefgen_dagster.config.base import Strict

# Pair rules that read the judge's scores, and rules that do not need a judge at all.
JUDGED_STRATEGIES = ("best_vs_worst", "best_vs_random_lower", "all_pairs", "evolved_vs_original")
RULE_STRATEGIES = ("rule_evolved_over_original", "rule_stronger_model")


class PairingConfig(Strict):
    # best_vs_worst, best_vs_random_lower, all_pairs, evolved_vs_original: the judge decides.
    # rule_evolved_over_original: every rewrite is taken as better than its original.
    # rule_stronger_model: the answer of a higher model in generation.model_ranking is taken
    # as better than a lower one's. With a judge present, its agreement is still reported.
    strategy: Literal[JUDGED_STRATEGIES + RULE_STRATEGIES] = "best_vs_worst"
    min_margin: float = Field(1.0, ge=0)
    # A completion whose repeated word 3-grams exceed this share is degenerate, and never
    # chosen (nor is one cut at max_tokens, or an empty one).
    max_repetition: float = Field(0.5, ge=0, le=1)
    seed: int = 0

    def judge_decides(self) -> bool:
        return self.strategy in JUDGED_STRATEGIES


class ChecksConfig(Strict):
    """Thresholds the SQL checks read with `{{ var('name') }}`."""

    length_outlier_mads: float = Field(5.0, gt=0)
    max_parse_failure_rate: float = Field(0.2, ge=0, le=1)
    # Share of a batch's distinct LLM requests that may fail for good (after retries) and
    # the batch still be exported with what it has.
    max_failed_request_rate: float = Field(0.1, ge=0, le=1)
    near_duplicate_similarity: float = Field(0.9, gt=0, le=1)  # word-set Jaccard
    near_duplicate_cosine: float = Field(0.95, gt=0, le=1)  # embeddings, where stored
    max_length_bias: float = Field(0.8, gt=0, le=1)
    min_pairs_for_length_bias: int = Field(10, ge=1)
    judge_outlier_gap: float = Field(2.0, gt=0)
    short_completion_chars: int = Field(20, ge=0)
    high_rating: float = Field(4.0, ge=1, le=5)
    # Label quality: a judge whose canary accuracy's 95% interval does not lie above this
    # (chance, for a two-way choice) holds its batch back.
    min_canary_accuracy: float = Field(0.5, ge=0, lt=1)
    # ... as does one whose ratings move more than this many points from the first position
    # shown to the last, on the same text.
    max_position_effect: float = Field(1.0, gt=0)
