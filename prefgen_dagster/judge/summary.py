"""Batch-level figures about the judging, for the `ratings` materialization (pure)."""

from __future__ import annotations

from typing import Any

import polars as pl

from prefgen_dagster.judge.agreement import (
    krippendorff_alpha_interval,
    mean_pairwise_tau,
    order_disagreement,
)


def summarize_ratings(ratings: pl.DataFrame) -> dict[str, Any]:
    """Parse failures per judge, order disagreement on the best completion, and agreement
    between judges (Krippendorff's alpha, interval; mean Kendall tau-b per instruction)."""
    failures = (
        ratings.group_by("judge")
        .agg((pl.col("parse_status") != "ok").mean().alias("rate"))
        .sort("judge")
    )
    judged: dict[tuple[str, ...], dict[str, dict[str, float | None]]] = {}
    for row in ratings.iter_rows(named=True):
        key = (row["instruction_id"], row["judge"], row["aspect"])
        judged.setdefault(key, {}).setdefault(row["order_name"], {})[row["completion_id"]] = row[
            "rating"
        ]
    disagreeing, compared = order_disagreement(judged)

    per_judge = (
        ratings.filter(pl.col("rating").is_not_null())
        .group_by("instruction_id", "completion_id", "judge", "aspect")
        .agg(pl.col("rating").mean())
        .group_by("instruction_id", "completion_id", "judge")
        .agg(pl.col("rating").mean().alias("score"))
    )
    units: dict[str, dict[str, float]] = {}
    scores: dict[str, dict[tuple[str, str], float]] = {}
    for row in per_judge.iter_rows(named=True):
        units.setdefault(row["completion_id"], {})[row["judge"]] = row["score"]
        scores.setdefault(row["judge"], {})[(row["instruction_id"], row["completion_id"])] = row[
            "score"
        ]
    multi_judge = len(scores) > 1
    return {
        "parse_failure_rate_per_judge": {
            row["judge"]: round(row["rate"], 4) for row in failures.iter_rows(named=True)
        },
        "order_disagreement_rate": round(disagreeing / compared, 4) if compared else None,
        "order_comparisons": compared,
        "judge_alpha": _rounded(krippendorff_alpha_interval(units)) if multi_judge else None,
        "judge_mean_tau": _rounded(mean_pairwise_tau(scores)) if multi_judge else None,
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
