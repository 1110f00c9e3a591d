"""What `prefgen run` prints about a batch's checks (`defs/report.py`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.defs.checks import run_check
from prefgen_dagster.defs.report import check_line, label_quality_report
from prefgen_dagster.sql.project import load_project
from prefgen_dagster.sql.vars import sql_vars
from prefgen_dagster.storage.store import Storage
from tests.unit.rows import build_models, rating_row
from tests.unit.sql.test_human_review import reviewed_batch

BATCH = "b1.jsonl"
PARSE_FAILURES = next(c for c in load_project().checks if c.name == "judge_parse_failures")


def evaluation(result: dg.AssetCheckResult) -> dg.AssetCheckEvaluation:
    """The evaluation a run records for a check's result, as `print_summary` reads it."""
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(PARSE_FAILURES.asset),
        check_name=PARSE_FAILURES.name,
        passed=result.passed,
        metadata=result.metadata,
        severity=result.severity,
    )


def test_a_held_back_batch_says_why_its_judge_failed_to_parse(
    storage: Storage,
    insert_rows: Callable[[str, list[dict[str, Any]]], None],
    config: PipelineConfig,
) -> None:
    ratings = [rating_row(f"c{i}", "i1", 3, BATCH) for i in range(6)]
    ratings += [
        rating_row(f"f{i}", "i1", None, BATCH, parse_status="wrong_count") for i in range(4)
    ]
    insert_rows("ratings", ratings)
    with storage.session():
        result = run_check(PARSE_FAILURES, storage, BATCH, sql_vars(config))
    assert check_line(evaluation(result)).splitlines() == [
        f"check {'judge_parse_failures':<28}{'FAILED (ERROR)':<16} offending rows: 4",
        "      because: 4 of 10 answered ratings could not be parsed (40.0%, above "
        "checks.max_parse_failure_rate 0.2); first: judge judge, completion f0: wrong_count "
        "(and 3 more)",
    ]
    # The same reason is what the export's held-back batches list.
    [reason] = storage.query("SELECT reason FROM check_results")["reason"].to_list()
    assert reason in check_line(evaluation(result))

    # A passing check stays one line.
    with storage.connect() as con:
        con.execute("UPDATE ratings SET parse_status = 'ok', rating = 3")
    with storage.session():
        result = run_check(PARSE_FAILURES, storage, BATCH, sql_vars(config))
    assert check_line(evaluation(result)) == (
        f"check {'judge_parse_failures':<28}{'passed':<16} offending rows: 0"
    )


def test_the_label_quality_block_shows_peoples_verdicts(
    storage: Storage,
    insert_rows: Callable[[str, list[dict[str, Any]]], None],
    config: PipelineConfig,
) -> None:
    reviewed_batch(insert_rows, storage, config)
    build_models(storage, config, BATCH)
    block = label_quality_report(storage, BATCH, config).splitlines()
    human = block.index("  human verdicts:")
    assert block[human + 1].startswith(
        "    pairs as made: agreement 0.56 (95% CI 0.26-0.83, 8 verdicts: 4 agree, 1 tied, "
        "3 disagree), 2 both bad; by margin <1: - (0), 1-2: 0.75 (2), >=2: 0.50 (6)"
    )
    assert block[human + 2].startswith("    judge j1: agreement 0.56")
    assert block[human + 3] == (
        "    annotators agree with each other on 0.50 of 6 pairs of verdicts on the same pair"
    )
    assert "    dropped (human): 1" in block
    assert "    flipped by people's verdicts: 1" in block
