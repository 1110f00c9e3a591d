"""How far people agree with the judge: the `human_agreement` model's rows (one per batch and
judge, plus `pairs` for the pairs as made; see `dbt_like_sql/models/human_agreement.sql`) as
lines for `prefgen run`'s label-quality block, the asset's metadata and the dataset card."""

from __future__ import annotations

from typing import Any

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
