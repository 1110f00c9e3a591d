"""What the judging stage tells a person about a batch's ratings: how the judge did on the
canaries and the position probe, how its ratings are spread, how far the judges agree, and
the label plots (the `ratings` asset's metadata and the run log's calibration lines)."""

from __future__ import annotations

from typing import Any

import polars as pl

from prefgen_dagster.judge.calibration import (
    accuracy_by_kind,
    calibration_lines,
    mean_rating_by_position,
)
from prefgen_dagster.judge.plots import label_plots, read_frames
from prefgen_dagster.judge.summary import summarize_ratings
from prefgen_dagster.llm.stage import Batch, Markdown, Report
from prefgen_dagster.summaries import counts_table, markdown_table


def judging_report(outputs: dict[str, pl.DataFrame], batch: Batch) -> Report:
    """The written ratings, canaries and calibration of a batch, summarized; the plots read
    the batch back from DuckDB (its candidates' lengths)."""
    config, storage, batch_id = batch.config, batch.storage, batch.batch_id
    ratings, calibration = outputs["ratings"], outputs["judge_calibration"]
    names = config.names_by_identity()
    drawn = label_plots(read_frames(storage, [batch_id]), names, config.checks.min_canary_accuracy)
    meta: dict[str, Any] = {
        "self_judging_models": config.self_judging(),
        **calibration_metadata(ratings, outputs["canaries"], calibration),
        "plots": drawn,
    }
    if ratings.height:
        labels = ratings.filter(pl.col("purpose") == "label")
        failures = ratings.filter(pl.col("parse_status") != "ok").height
        summary = summarize_ratings(ratings.filter(pl.col("purpose") != "canary"))
        meta |= {
            "rating_distribution": Markdown(counts_table(labels["rating"], "rating")),
            "parse_status": Markdown(counts_table(ratings["parse_status"], "status")),
            "parse_failure_rate": round(failures / ratings.height, 4),
            "parse_failure_rate_per_judge": summary["parse_failure_rate_per_judge"],
            "mean_rating_by_position": mean_rating_by_position(ratings),
            "order_disagreement_rate": summary["order_disagreement_rate"],
            "order_comparisons": summary["order_comparisons"],
            "judge_agreement_alpha": summary["judge_alpha"],
            "judge_agreement_mean_tau": summary["judge_mean_tau"],
        }
    return Report(meta, calibration_lines(calibration, names))


def calibration_metadata(
    ratings: pl.DataFrame, canaries: pl.DataFrame, calibration: pl.DataFrame
) -> dict[str, Any]:
    """The judge's canary accuracy and position effect."""
    if calibration.is_empty():
        return {"canaries_built": canaries.height}
    [labels] = calibration.filter(pl.col("sets_labels")).to_dicts()
    rounded = {
        key: None if value is None else round(value, 4)
        for key, value in labels.items()
        if key in ("canary_accuracy", "canary_ci_low", "canary_ci_high", "position_effect")
    }
    return {
        "canaries_built": canaries.height,
        "canary_accuracy": rounded["canary_accuracy"],
        "canary_accuracy_ci95": [rounded["canary_ci_low"], rounded["canary_ci_high"]],
        "position_effect": rounded["position_effect"],
        "canary_accuracy_by_kind": accuracy_by_kind(ratings, canaries, labels["judge"]),
        "judge_calibration": Markdown(markdown_table(calibration, 20)),
    }
