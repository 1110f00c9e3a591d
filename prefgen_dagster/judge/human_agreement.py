"""How far people agree with the judge: the `human_agreement` model's rows (one per batch and
judge, plus `pairs` for the pairs as made; see `dbt_like_sql/models/human_agreement.sql`) as
lines for `prefgen run`'s label-quality block, the pair assets' metadata and the dataset card,
and as a plot."""

from __future__ import annotations

from typing import Any

import polars as pl

from prefgen_dagster.judge.calibration import wilson_interval
from prefgen_dagster.judge.figure import CHANCE, new_figure, to_png
from prefgen_dagster.storage.store import Storage

# The SQL model, and its table.
HUMAN_AGREEMENT = "human_agreement"

# The human_agreement row of the pairs as made (the judge's or panel's scores, or the rule).
PAIRS = "pairs"
# Margin buckets: (column suffix, label).
BUCKETS = (("under_1", "<1"), ("1_to_2", "1-2"), ("2_up", ">=2"))


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def agreement_line(row: dict[str, Any], names: dict[str, str] | None = None) -> str:
    """One judge's (or the pairs') agreement with people: the share with its interval and
    counts, by margin bucket, and the canary accuracy beside it."""
    judge = row["judge"]
    who = "pairs as made" if judge == PAIRS else f"judge {(names or {}).get(judge, judge)}"
    if not row["verdicts"]:
        figures = "no scored verdict"
    else:
        figures = (
            f"agreement {_share(row['agreement'])} (95% CI {_share(row['agreement_ci_low'])}-"
            f"{_share(row['agreement_ci_high'])}, {row['verdicts']} verdicts: {row['agree']} "
            f"agree, {row['ties']} tied, {row['disagree']} disagree)"
        )
    if row["both_bad"]:
        figures += f", {row['both_bad']} both bad"
    buckets = ", ".join(
        f"{label}: {_share(row[f'agreement_margin_{suffix}'])} ({row[f'verdicts_margin_{suffix}']})"
        for suffix, label in BUCKETS
    )
    canary = row["canary_accuracy"]
    canaries = "no canary accuracy" if canary is None else f"canary accuracy {canary:.2f}"
    return f"{who}: {figures}; by margin {buckets}; {canaries}"


def agreement_lines(rows: list[dict[str, Any]], names: dict[str, str] | None = None) -> list[str]:
    """A batch's rows as lines: the pairs as made first, then each judge, then how far the
    annotators agree with each other and the verdicts that no pair matched."""
    if not rows:
        return []
    ordered = sorted(rows, key=lambda row: (row["judge"] != PAIRS, row["judge"]))
    lines = [agreement_line(row, names) for row in ordered]
    first = ordered[0]
    if first["annotator_pairs"]:
        lines.append(
            f"annotators agree with each other on {first['annotator_agreement']:.2f} of "
            f"{first['annotator_pairs']} pairs of verdicts on the same pair"
        )
    else:
        lines.append("annotators agree with each other: no pair has two verdicts yet")
    if first["unmatched_verdicts"]:
        lines.append(
            "verdicts on pairs the batch no longer makes (not counted): "
            f"{first['unmatched_verdicts']}"
        )
    return lines


def read_agreement(storage: Storage, batch_ids: list[str]) -> pl.DataFrame:
    """The batches' `human_agreement` rows (none before the model's first run, or without
    verdicts)."""
    if not batch_ids or HUMAN_AGREEMENT not in storage.column_types():
        return pl.DataFrame()
    return storage.query(
        f"SELECT * FROM {HUMAN_AGREEMENT} WHERE batch_id IN (SELECT unnest(?::VARCHAR[])) "
        "ORDER BY batch_id, judge",
        [batch_ids],
    )


def pooled(rows: pl.DataFrame) -> pl.DataFrame:
    """Per judge over the rows' batches: scored verdicts, agreement (ties half) with its 95%
    Wilson interval, and verdicts and agreement per margin bucket."""
    credit = pl.col("agreement").fill_null(0) * pl.col("verdicts")
    buckets = []
    for suffix, _ in BUCKETS:
        n, share = f"verdicts_margin_{suffix}", f"agreement_margin_{suffix}"
        buckets += [
            pl.col(n).sum(),
            ((pl.col(share).fill_null(0) * pl.col(n)).sum() / pl.col(n).sum()).alias(share),
        ]
    totals = (
        rows.group_by("judge")
        .agg(pl.col("verdicts").sum(), credit.sum().alias("credit"), *buckets)
        .filter(pl.col("verdicts") > 0)
        .sort(pl.col("judge") != PAIRS, "judge")
    )
    intervals = [
        wilson_interval(credit, n) for credit, n in totals.select("credit", "verdicts").rows()
    ]
    return totals.with_columns(
        (pl.col("credit") / pl.col("verdicts")).alias("agreement"),
        pl.Series("agreement_ci_low", [low for low, _ in intervals], pl.Float64),
        pl.Series("agreement_ci_high", [high for _, high in intervals], pl.Float64),
    )


def agreement_plot(rows: pl.DataFrame, bound: float | None = None) -> bytes | None:
    """Each judge's (and the pairs') agreement with people over the rows' batches: a point
    with its 95% interval, then one per margin bucket, so a judge whose larger margins
    people agree with more rises to the right; chance and the gate's `bound` across."""
    if rows.is_empty():
        return None
    totals = pooled(rows)
    if totals.is_empty():
        return None
    places = ["all", *(label for _, label in BUCKETS)]
    figure, axes = new_figure("Agreement with people")
    step = 0.5 / totals.height
    for i, row in enumerate(totals.iter_rows(named=True)):
        shift = step * (i - (totals.height - 1) / 2)
        low = row["agreement"] - row["agreement_ci_low"]
        high = row["agreement_ci_high"] - row["agreement"]
        label = "pairs as made" if row["judge"] == PAIRS else row["judge"]
        line = axes.errorbar(
            [shift], [row["agreement"]], yerr=[[low], [high]], fmt="o", capsize=3, label=label
        )
        by_margin = [row[f"agreement_margin_{suffix}"] for suffix, _ in BUCKETS]
        axes.plot(
            [x + 1 + shift for x in range(len(BUCKETS))],
            by_margin,
            marker="s",
            linestyle=":",
            color=line.lines[0].get_color(),
        )
    axes.axhline(CHANCE, color="grey", linestyle="--", label="chance")
    if bound is not None:
        axes.axhline(bound, color="tab:red", linestyle=":", label=f"gate bound {bound:g}")
    axes.set_xticks(range(len(places)), places)
    axes.set_xlabel("verdicts: all, then by margin (rating points)", fontsize=8)
    axes.set_ylabel("agreement", fontsize=8)
    axes.set_ylim(0, 1.05)
    axes.legend(fontsize=7, loc="lower right")
    return to_png(figure)
