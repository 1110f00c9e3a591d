"""How good is this judge on this batch? Canary accuracy and position effect (pure).

* **Canary accuracy**: the share of canaries whose intact side the judge scored above the
  corrupted side; a tie counts as half (a coin flip), so a judge that cannot tell them
  apart sits at 0.5 whatever it does. Reported with a 95% Wilson score interval; the
  `judge_canary_accuracy` gate asks that the interval lie above chance.
* **Position effect**: how many rating points a text gains from being shown last rather
  than first, the same text compared with itself. For every text shown at two or more
  positions (listwise orders and the reversed probe; pairwise A and B), ratings and
  positions (scaled to 0 = first, 1 = last) are centred on that text's own means, and the
  effect is the least-squares slope through all of them. Text quality cancels out; an
  unbiased judge has an effect near 0, the judge that rates by position about 4.

Scores follow the pair rule in `dpo_pairs.sql`: a text's score is the mean over aspects of
its mean rating; a panel's score is the mean over its judges and aspects.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from prefgen_dagster.judge.modes import MODES
from prefgen_dagster.storage.schema import TABLES

Z_95 = 1.959964
PANEL = "panel"


def wilson_interval(successes: float, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (None when n is 0)."""
    if n <= 0:
        return None
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denominator = 1 + z * z / n
    return max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator)


def item_scores(ratings: pl.DataFrame, by_judge: bool = True) -> pl.DataFrame:
    """(judge, completion_id, score): per judge the mean over aspects of the mean rating;
    with `by_judge` off, one panel score per text (mean over judges and aspects)."""
    per_aspect = (
        ratings.filter(pl.col("rating").is_not_null())
        .group_by("judge", "aspect", "completion_id")
        .agg(pl.col("rating").cast(pl.Float64).mean())
    )
    keys = ["judge", "completion_id"] if by_judge else ["completion_id"]
    scores = per_aspect.group_by(keys).agg(pl.col("rating").mean().alias("score"))
    return scores if by_judge else scores.with_columns(pl.lit(PANEL).alias("judge"))


def canary_outcomes(ratings: pl.DataFrame, canaries: pl.DataFrame) -> pl.DataFrame:
    """One row per canary and judge (and the panel, with two or more judges): the intact and
    corrupted scores and the outcome `correct`, `tied`, `wrong` or `unscored`."""
    canary_rows = ratings.filter(pl.col("purpose") == "canary")
    judges = sorted(set(ratings["judge"].to_list())) if ratings.height else []
    if canaries.is_empty() or not judges:
        return pl.DataFrame(
            schema={
                "canary_id": pl.String,
                "kind": pl.String,
                "judge": pl.String,
                "intact_score": pl.Float64,
                "corrupted_score": pl.Float64,
                "outcome": pl.String,
            }
        )
    scores = [item_scores(canary_rows)]
    if len(judges) > 1:
        scores.append(item_scores(canary_rows, by_judge=False))
    score = pl.concat([s.select("judge", "completion_id", "score") for s in scores])
    grid = canaries.select("canary_id", "kind", "intact_id", "corrupted_id").join(
        pl.DataFrame({"judge": judges + ([PANEL] if len(judges) > 1 else [])}), how="cross"
    )
    joined = grid.join(
        score.rename({"completion_id": "intact_id", "score": "intact_score"}),
        on=["judge", "intact_id"],
        how="left",
    ).join(
        score.rename({"completion_id": "corrupted_id", "score": "corrupted_score"}),
        on=["judge", "corrupted_id"],
        how="left",
    )
    outcome = (
        pl.when(pl.col("intact_score").is_null() | pl.col("corrupted_score").is_null())
        .then(pl.lit("unscored"))
        .when(pl.col("intact_score") > pl.col("corrupted_score"))
        .then(pl.lit("correct"))
        .when(pl.col("intact_score") == pl.col("corrupted_score"))
        .then(pl.lit("tied"))
        .otherwise(pl.lit("wrong"))
    )
    return joined.with_columns(outcome.alias("outcome")).select(
        "canary_id", "kind", "judge", "intact_score", "corrupted_score", "outcome"
    )


def accuracy(outcomes: list[str]) -> dict[str, Any]:
    """Counts, accuracy (ties as half) and its 95% interval for one judge's canaries."""
    counts = {name: outcomes.count(name) for name in ("correct", "tied", "wrong", "unscored")}
    scored = counts["correct"] + counts["tied"] + counts["wrong"]
    successes = counts["correct"] + 0.5 * counts["tied"]
    interval = wilson_interval(successes, scored)
    return {
        "canaries": scored,
        "canaries_correct": counts["correct"],
        "canaries_tied": counts["tied"],
        "canaries_wrong": counts["wrong"],
        "canaries_unscored": counts["unscored"],
        "canary_accuracy": successes / scored if scored else None,
        "canary_ci_low": interval[0] if interval else None,
        "canary_ci_high": interval[1] if interval else None,
    }


def accuracy_by_kind(
    ratings: pl.DataFrame, canaries: pl.DataFrame, judge: str
) -> dict[str, dict[str, Any]]:
    """{kind: {canaries, accuracy}} for one judge (or the panel): which corruptions it sees."""
    outcomes = canary_outcomes(ratings, canaries).filter(pl.col("judge") == judge)
    result = {}
    for kind in sorted(set(outcomes["kind"].to_list())):
        figures = accuracy(outcomes.filter(pl.col("kind") == kind)["outcome"].to_list())
        share = figures["canary_accuracy"]
        result[kind] = {
            "canaries": figures["canaries"],
            "accuracy": None if share is None else round(share, 4),
        }
    return result


def position_effect(ratings: pl.DataFrame) -> dict[str, tuple[float | None, int]]:
    """{judge: (effect in rating points from first to last position, texts that moved)}."""
    shown = ratings.filter(pl.col("rating").is_not_null() & (pl.col("shown") > 1))
    result: dict[str, tuple[float | None, int]] = {
        judge: (None, 0) for judge in sorted(set(ratings["judge"].to_list()))
    }
    if shown.is_empty():
        return result
    unit = ["judge", "aspect", "completion_id"]
    centred = shown.with_columns(
        ((pl.col("position") - 1) / (pl.col("shown") - 1)).alias("x"),
        pl.col("rating").cast(pl.Float64).alias("y"),
    ).with_columns(
        (pl.col("x") - pl.col("x").mean().over(unit)).alias("dx"),
        (pl.col("y") - pl.col("y").mean().over(unit)).alias("dy"),
    )
    per_judge = centred.group_by("judge").agg(
        (pl.col("dx") * pl.col("dy")).sum().alias("sxy"),
        (pl.col("dx") ** 2).sum().alias("sxx"),
        pl.struct(unit).filter(pl.col("dx").abs() > 1e-12).n_unique().alias("moved"),
    )
    for row in per_judge.iter_rows(named=True):
        effect = row["sxy"] / row["sxx"] if row["sxx"] > 1e-12 else None
        result[row["judge"]] = (effect, int(row["moved"]) if effect is not None else 0)
    return result


def mean_rating_by_position(ratings: pl.DataFrame) -> dict[str, dict[str, float]]:
    """{judge: {position: mean rating}} over requests that showed more than one text."""
    shown = ratings.filter(pl.col("rating").is_not_null() & (pl.col("shown") > 1))
    means = (
        shown.group_by("judge", "position")
        .agg(pl.col("rating").mean().round(3))
        .sort("judge", "position")
    )
    result: dict[str, dict[str, float]] = {}
    for row in means.iter_rows(named=True):
        result.setdefault(row["judge"], {})[str(row["position"])] = row["rating"]
    return result


def calibrate(ratings: pl.DataFrame, canaries: pl.DataFrame, batch_id: str) -> pl.DataFrame:
    """The `judge_calibration` rows: one per judge, plus a `panel` row with two or more
    judges. `sets_labels` marks the row whose scores make the pairs (the single judge, or
    the panel); the gates read that row. Each row names its judge's mode (the panel's, its
    judges' modes)."""
    judges = sorted(set(ratings["judge"].to_list())) if ratings.height else []
    if not judges:
        return TABLES["judge_calibration"].frame([])
    modes = {
        row["judge"]: row["mode"] for row in ratings.select("judge", "mode").unique().to_dicts()
    }
    outcomes = canary_outcomes(ratings, canaries)
    effects = position_effect(ratings)
    rows = []
    for judge in judges + ([PANEL] if len(judges) > 1 else []):
        if judge == PANEL:
            known = [effects[j][0] for j in judges if effects[j][0] is not None]
            effect = sum(known) / len(known) if known else None
            moved = sum(effects[j][1] for j in judges)
        else:
            effect, moved = effects[judge]
        mine = outcomes.filter(pl.col("judge") == judge)["outcome"].to_list()
        rows.append(
            {
                "batch_id": batch_id,
                "judge": judge,
                "mode": "+".join(sorted(set(modes.values()))) if judge == PANEL else modes[judge],
                "sets_labels": judge == PANEL or len(judges) == 1,
                **accuracy(mine),
                "position_effect": effect,
                "position_items": moved,
            }
        )
    return TABLES["judge_calibration"].frame(rows)


def calibration_lines(calibration: pl.DataFrame, names: dict[str, str] | None = None) -> list[str]:
    """One line per row for logs and the run summary; `names` maps a judge's identity (its
    model path) to the name the config gives it."""
    lines = []
    for row in calibration.sort("sets_labels", "judge", descending=[True, False]).to_dicts():
        if row["canaries"]:
            canaries = (
                f"canary accuracy {row['canary_accuracy']:.2f} (95% CI "
                f"{row['canary_ci_low']:.2f}-{row['canary_ci_high']:.2f}, {row['canaries']} "
                f"canaries: {row['canaries_correct']} right, {row['canaries_tied']} tied, "
                f"{row['canaries_wrong']} wrong)"
            )
        else:
            canaries = "no canary scored"
        effect = row["position_effect"]
        one_text = row["mode"] in MODES and MODES[row["mode"]].one_text_per_request
        position = (
            f"no position effect by construction ({row['mode']}: one text per request)"
            if effect is None and one_text
            else "position effect n/a (no text was shown at two positions)"
            if effect is None
            else f"position effect {effect:+.2f} points first->last ({row['position_items']} texts)"
        )
        who = (
            "panel"
            if row["judge"] == PANEL
            else f"judge {(names or {}).get(row['judge'], row['judge'])}"
        )
        lines.append(f"{who} ({row['mode']}): {canaries}; {position}")
    return lines
