"""Human review rounds: a blind sample of a batch's pairs in an annotation tool (Label
Studio), and what the verdicts that come back do (docs/judging.md#human-review)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from prefgen_dagster.config.base import Strict


class ReviewConfig(Strict):
    # The annotation server prefgen talks to over HTTP (`scripts/review-server.sh` starts one
    # on 127.0.0.1), and the environment variable that holds its API token: the token itself
    # is never in the config, a log, metadata or the card.
    url: str = "http://127.0.0.1:8095"
    token_env: str = "PREFGEN_REVIEW_TOKEN"
    # Pairs of a batch sent for review: a count (>= 1), or a share of its pairs (below 1).
    # Drawn with `seed`, stratified by margin bucket and pair kind.
    sample: float = Field(50, gt=0)
    # Also send every pair a rule dropped (candidate_pairs.dropped_because).
    include_dropped: bool = False
    seed: int = 0
    # The judge_human_agreement gate holds a batch back once it has this many scored
    # verdicts and the 95% interval of the judge's agreement with them lies below
    # `min_agreement` (people show the judge wrong, not merely too few verdicts).
    min_verdicts: int = Field(20, ge=1)
    min_agreement: float = Field(0.6, gt=0, lt=1)
    # A pair people marked the other way round (the majority of its verdicts): its sides
    # swapped, or the pair dropped. A pair marked both-bad is always dropped.
    on_disagreement: Literal["flip", "drop"] = "flip"
