"""Pictures of the labels: frames in, small PNGs out (pure; the Dagster UI and the dataset
card show them).

Each plot function returns PNG bytes, or None when its data is absent (no canaries, a
pointwise judge that shows one text per request, no pairs yet), so a caller shows only what
the batch has (the drawing helpers they share: `judge/figure.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from prefgen_dagster.judge.calibration import item_scores, mean_rating_by_position
from prefgen_dagster.judge.figure import CHANCE, Plot, new_figure, to_png
from prefgen_dagster.judge.human_agreement import agreement_plot
from prefgen_dagster.storage.store import Storage

RATINGS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class LabelFrames:
    """What the plots read: `ratings` rows, `candidates` (completion_id, chars),
    `judge_calibration` rows, pairs (`dpo_pairs` or the export's; margin) and
    `human_agreement` rows."""

    ratings: pl.DataFrame
    candidates: pl.DataFrame
    calibration: pl.DataFrame
    pairs: pl.DataFrame
    agreement: pl.DataFrame = field(default_factory=pl.DataFrame)


def read_frames(
    storage: Storage,
    batch_ids: list[str],
    pairs: pl.DataFrame | None = None,
    agreement: pl.DataFrame | None = None,
) -> LabelFrames:
    """The batches' ratings, candidates and calibration from DuckDB, and the `pairs` whose
    margins and the `human_agreement` rows to plot, if any: when the ratings are written
    the batch's pairs are not made yet (nor measured against people's verdicts), and the
    export passes the pairs it exports and their batches' agreement."""
    where = "WHERE batch_id IN (SELECT unnest(?::VARCHAR[]))"
    ratings = storage.query(
        f"SELECT judge, purpose, position, shown, rating, aspect, completion_id FROM ratings "
        f"{where}",
        [batch_ids],
    )
    return LabelFrames(
        ratings=ratings,
        candidates=_candidates(storage, where, batch_ids),
        calibration=storage.query(f"SELECT * FROM judge_calibration {where}", [batch_ids]),
        pairs=pl.DataFrame() if pairs is None else pairs,
        agreement=pl.DataFrame() if agreement is None else agreement,
    )


def _candidates(storage: Storage, where: str, batch_ids: list[str]) -> pl.DataFrame:
    # `candidates` is a SQL model's table, created by its first run.
    if "candidates" not in storage.column_types():
        return pl.DataFrame()
    return storage.query(f"SELECT completion_id, chars FROM candidates {where}", [batch_ids])


def _labels(ratings: pl.DataFrame) -> pl.DataFrame:
    if ratings.is_empty():
        return ratings
    return ratings.filter((pl.col("purpose") == "label") & pl.col("rating").is_not_null())


def rating_histogram(ratings: pl.DataFrame) -> bytes | None:
    """How often each judge gave each rating (labels only), bars side by side."""
    labels = _labels(ratings)
    if labels.is_empty():
        return None
    judges = sorted(set(labels["judge"].to_list()))
    figure, axes = new_figure("Ratings per judge")
    width = 0.8 / len(judges)
    for i, judge in enumerate(judges):
        counts = labels.filter(pl.col("judge") == judge)["rating"].value_counts()
        by_rating = dict(zip(counts["rating"].to_list(), counts["count"].to_list(), strict=True))
        offsets = [r - 0.4 + width * (i + 0.5) for r in RATINGS]
        axes.bar(offsets, [by_rating.get(r, 0) for r in RATINGS], width, label=judge)
    axes.set_xticks(RATINGS)
    axes.set_xlabel("rating", fontsize=8)
    axes.set_ylabel("texts", fontsize=8)
    axes.legend(fontsize=7)
    return to_png(figure)


def margin_histogram(pairs: pl.DataFrame) -> bytes | None:
    """The pairs' margins (rating points between chosen and rejected)."""
    if pairs.is_empty() or "margin" not in pairs.columns:
        return None
    margins = pairs["margin"].drop_nulls().to_list()
    if not margins:
        return None
    figure, axes = new_figure("Margins of the pairs")
    axes.hist(margins, bins=[x / 4 for x in range(17)], color="tab:green", edgecolor="white")
    axes.set_xlabel("margin (rating points)", fontsize=8)
    axes.set_ylabel("pairs", fontsize=8)
    return to_png(figure)


def rating_by_position(ratings: pl.DataFrame) -> bytes | None:
    """Each judge's mean rating by the text's place in its prompt: flat for a judge that
    reads the texts, sloped for one that rates by position."""
    if ratings.is_empty():
        return None
    means = mean_rating_by_position(ratings)
    if not means:
        return None
    figure, axes = new_figure("Mean rating by position in the prompt")
    for judge, by_position in means.items():
        positions = sorted(by_position, key=int)
        axes.plot(
            [int(p) for p in positions],
            [by_position[p] for p in positions],
            marker="o",
            label=judge,
        )
    axes.set_xlabel("position (1 = shown first)", fontsize=8)
    axes.set_ylabel("mean rating", fontsize=8)
    axes.set_ylim(1, 5)
    axes.legend(fontsize=7)
    return to_png(figure)


def length_vs_rating(ratings: pl.DataFrame, candidates: pl.DataFrame) -> bytes | None:
    """Each text's score against its length: a rising cloud means the judge rewards length."""
    labels = _labels(ratings)
    if labels.is_empty() or candidates.is_empty():
        return None
    scored = item_scores(labels).join(
        candidates.select("completion_id", "chars"), on="completion_id"
    )
    if scored.is_empty():
        return None
    figure, axes = new_figure("Length vs rating")
    for judge in sorted(set(scored["judge"].to_list())):
        mine = scored.filter(pl.col("judge") == judge)
        axes.scatter(mine["chars"].to_list(), mine["score"].to_list(), s=10, alpha=0.6, label=judge)
    axes.set_xlabel("characters", fontsize=8)
    axes.set_ylabel("score (mean rating)", fontsize=8)
    # A fixed corner: "best" would test every point of the cloud against each place.
    axes.legend(fontsize=7, loc="lower right")
    return to_png(figure)


def canary_accuracy(calibration: pl.DataFrame, bound: float | None = None) -> bytes | None:
    """Each judge's canary accuracy over the rows' batches (ties as half), with chance and
    the gate's bound drawn across."""
    if calibration.is_empty() or not calibration["canaries"].sum():
        return None
    totals = (
        calibration.group_by("judge")
        .agg(
            pl.col("canaries").sum(),
            pl.col("canaries_correct").sum(),
            pl.col("canaries_tied").sum(),
        )
        .filter(pl.col("canaries") > 0)
        .sort("judge")
    )
    shares = (totals["canaries_correct"] + 0.5 * totals["canaries_tied"]) / totals["canaries"]
    figure, axes = new_figure("Canary accuracy")
    axes.bar(totals["judge"].to_list(), shares.to_list(), color="tab:blue")
    axes.axhline(CHANCE, color="grey", linestyle="--", label="chance")
    if bound is not None:
        axes.axhline(bound, color="tab:red", linestyle=":", label=f"gate bound {bound:g}")
    axes.set_ylim(0, 1)
    axes.set_ylabel("share right", fontsize=8)
    axes.legend(fontsize=7)
    return to_png(figure)


def label_plots(
    frames: LabelFrames,
    names: dict[str, str] | None = None,
    bound: float | None = None,
    agreement_bound: float | None = None,
) -> list[Plot]:
    """Every plot the frames have data for, judges named as the config names them
    (`names`: identity -> name); `bound` is checks.min_canary_accuracy, `agreement_bound`
    review.min_agreement."""
    ratings, calibration = _named(frames.ratings, names), _named(frames.calibration, names)
    agreement = _named(frames.agreement, names)
    drawn: list[tuple[str, str, str, Callable[[], bytes | None]]] = [
        (
            "ratings_by_judge",
            "Ratings per judge",
            "How often each judge gave each 1-5 rating to the candidates.",
            lambda: rating_histogram(ratings),
        ),
        (
            "margins",
            "Margins of the pairs",
            "Rating points between chosen and rejected, over the final pairs.",
            lambda: margin_histogram(frames.pairs),
        ),
        (
            "rating_by_position",
            "Rating by position",
            "Mean rating by the text's place in the judge's prompt; a slope is position bias.",
            lambda: rating_by_position(ratings),
        ),
        (
            "length_vs_rating",
            "Length vs rating",
            "Each candidate's score against its length; a rising cloud is length bias.",
            lambda: length_vs_rating(ratings, frames.candidates),
        ),
        (
            "canary_accuracy",
            "Canary accuracy",
            "Share of canaries (a real answer against a corrupted copy) each judge got right.",
            lambda: canary_accuracy(calibration, bound),
        ),
        (
            "human_agreement",
            "Agreement with people",
            "Share of human verdicts that prefer the text the labels put first (ties half), "
            "with its 95% interval, overall and by margin.",
            lambda: agreement_plot(agreement, agreement_bound),
        ),
    ]
    plots = []
    for name, title, caption, draw in drawn:
        png = draw()
        if png is not None:
            plots.append(Plot(name, title, caption, png))
    return plots


def _named(frame: pl.DataFrame, names: dict[str, str] | None) -> pl.DataFrame:
    if not names or "judge" not in frame.columns:
        return frame
    return frame.with_columns(pl.col("judge").replace(names))
