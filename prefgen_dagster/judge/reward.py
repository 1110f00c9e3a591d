"""A reward model's ratings: its raw scores have no fixed scale (a logit, often between -10
and 10, drifting with the model and the prompts), so each is placed on the judges' 1-5
scale among the batch's scores of the same model: 1 + 4 x (score - lowest) / (highest -
lowest). The order of the texts, and so every canary's outcome and every pair's direction, is
the model's own; a margin is a share of the batch's range. The raw score stays in
`ratings.raw_score`. Kept and new rows are placed together, so a grown batch is placed anew.
"""

from __future__ import annotations

import polars as pl


def rated_by_scores(ratings: pl.DataFrame) -> pl.DataFrame:
    """`ratings` with each reward-model row's rating set from its raw score (rows of other
    judges, and rows without a score, as they are)."""
    if not ratings.height or ratings["raw_score"].is_null().all():
        return ratings
    scored = pl.col("raw_score").is_not_null()
    low = pl.col("raw_score").min().over("judge")
    high = pl.col("raw_score").max().over("judge")
    placed = (
        pl.when(high > low).then(1 + 4 * (pl.col("raw_score") - low) / (high - low)).otherwise(3.0)
    )
    return ratings.with_columns(
        rating=pl.when(scored).then(placed).otherwise(pl.col("rating")).cast(pl.Float64)
    )
