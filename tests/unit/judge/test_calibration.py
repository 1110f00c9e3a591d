"""Canary accuracy with its interval, and the position effect, on crafted ratings."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest

from prefgen_dagster.judge.calibration import (
    PANEL,
    accuracy,
    calibrate,
    calibration_lines,
    canary_outcomes,
    mean_rating_by_position,
    position_effect,
    wilson_interval,
)
from prefgen_dagster.storage.schema import TABLES
from tests.unit.rows import rating_row

BATCH = "b.jsonl"


# --- the interval --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        # Textbook values (Wilson 1927; e.g. Newcombe 1998, table I: 81/263 -> 0.2553-0.3662).
        (81, 263, 0.2553, 0.3662),
        (8, 10, 0.4902, 0.9433),
        (10, 10, 0.7225, 1.0),
        (0, 10, 0.0, 0.2775),
        (20, 40, 0.3520, 0.6480),
    ],
)
def test_wilson_interval(successes: float, n: int, low: float, high: float) -> None:
    interval = wilson_interval(successes, n)
    assert interval == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_of_nothing_is_none() -> None:
    assert wilson_interval(0, 0) is None


def test_accuracy_counts_ties_as_half() -> None:
    figures = accuracy(["correct"] * 6 + ["tied"] * 2 + ["wrong"] * 2 + ["unscored"] * 3)
    assert figures["canaries"] == 10  # unscored ones are not in the denominator
    assert figures["canaries_unscored"] == 3
    assert figures["canary_accuracy"] == 0.7
    assert (figures["canary_ci_low"], figures["canary_ci_high"]) == pytest.approx(
        wilson_interval(7, 10)
    )
    # A judge that ties everything sits exactly at chance.
    assert accuracy(["tied"] * 30)["canary_accuracy"] == 0.5
    assert accuracy(["unscored"])["canary_accuracy"] is None


# --- crafted ratings -----------------------------------------------------------------------


def row(
    cid: str,
    position: int,
    rating: int | None,
    shown: int,
    *,
    judge: str = "j",
    purpose: str = "label",
    call: str = "call",
) -> dict[str, Any]:
    """One text's rating at `position` of the `shown` texts of request `call`."""
    fields = {"position": position, "shown": shown, "purpose": purpose, "mode": "listwise"}
    return rating_row(cid, "i", rating, BATCH, judge, call_id=call, rationale=None, **fields)


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=TABLES["ratings"].frame_schema)


def listwise_orders(scores: dict[str, float], by_position: list[int], judge: str = "j") -> list:
    """A judge that shows `scores`' texts in both orders and gives each position a fixed
    rating (`by_position`) plus nothing for the text itself."""
    ids = list(scores)
    rows = []
    for order, shown in (("original", ids), ("reversed", ids[::-1])):
        for position, cid in enumerate(shown, start=1):
            rows.append(
                row(cid, position, by_position[position - 1], len(ids), judge=judge, call=order)
            )
    return rows


def test_a_judge_that_rates_by_position_has_an_effect_of_the_spread() -> None:
    rows = listwise_orders({"a": 0, "b": 0, "c": 0, "d": 0, "e": 0}, [1, 2, 3, 4, 5])
    effect, moved = position_effect(frame(rows))["j"]
    assert effect == pytest.approx(4.0)
    assert moved == 4  # "c" sits in the middle both times
    assert mean_rating_by_position(frame(rows)) == {
        "j": {"1": 1.0, "2": 2.0, "3": 3.0, "4": 4.0, "5": 5.0}
    }


def test_a_judge_that_rates_by_content_has_no_effect() -> None:
    quality = {"a": 5, "b": 1, "c": 4, "d": 2}
    rows = []
    for order, shown in (("original", list(quality)), ("reversed", list(quality)[::-1])):
        for position, cid in enumerate(shown, start=1):
            rows.append(row(cid, position, quality[cid], 4, call=order))
    assert position_effect(frame(rows))["j"] == (pytest.approx(0.0), 4)


def test_position_effect_needs_a_text_seen_at_two_positions() -> None:
    # One order only: positions and quality cannot be told apart, so there is no figure.
    one_order = [row(cid, p, p, 3) for p, cid in enumerate(["a", "b", "c"], start=1)]
    assert position_effect(frame(one_order)) == {"j": (None, 0)}
    # Pointwise: one text per request.
    assert position_effect(frame([row("a", 1, 4, 1)])) == {"j": (None, 0)}


def canary_rows(outcomes: dict[str, tuple[int, int]], judge: str = "j") -> tuple[list, list]:
    """Canaries whose intact/corrupted sides got the given ratings."""
    ratings, canaries = [], []
    for cid, (intact, corrupted) in outcomes.items():
        canaries.append(
            {
                "batch_id": BATCH,
                "canary_id": cid,
                "instruction_id": "i",
                "kind": "truncated" if cid.startswith("t") else "shuffled",
                "intact_id": f"{cid}+",
                "corrupted_id": f"{cid}-",
                "source_completion_id": "src",
                "source_model": "m",
                "corrupted_from_id": None,
                "corrupted_text": "x",
                "corrupted_first": False,
            }
        )
        ratings += [
            row(f"{cid}+", 1, intact, 2, judge=judge, purpose="canary", call=cid),
            row(f"{cid}-", 2, corrupted, 2, judge=judge, purpose="canary", call=cid),
        ]
    return ratings, canaries


def test_canary_outcomes_and_calibration_rows() -> None:
    ratings, canaries = canary_rows(
        {"t1": (5, 1), "t2": (4, 4), "s1": (2, 3), "s2": (5, 2), "s3": (None, 2)}
    )
    table = pl.DataFrame(canaries, schema=TABLES["canaries"].frame_schema)
    outcomes = canary_outcomes(frame(ratings), table)
    assert dict(outcomes.select("canary_id", "outcome").iter_rows()) == {
        "t1": "correct",
        "t2": "tied",
        "s1": "wrong",
        "s2": "correct",
        "s3": "unscored",
    }
    [calibration] = calibrate(frame(ratings), table, BATCH).to_dicts()
    assert calibration["sets_labels"] and calibration["judge"] == "j"
    assert (calibration["canaries"], calibration["canaries_unscored"]) == (4, 1)
    assert calibration["canary_accuracy"] == 2.5 / 4
    assert calibration["position_effect"] is None  # every text was shown once
    [line] = calibration_lines(calibrate(frame(ratings), table, BATCH))
    assert line.startswith("judge j (listwise): canary accuracy 0.62 (95% CI ")
    assert "4 canaries: 2 right, 1 tied, 1 wrong" in line


def test_a_panel_gets_its_own_row_and_sets_the_labels() -> None:
    good, canaries = canary_rows({f"t{n}": (5, 1) for n in range(6)}, judge="good")
    bad, _ = canary_rows({f"t{n}": (1, 5) for n in range(6)}, judge="bad")
    table = pl.DataFrame(canaries, schema=TABLES["canaries"].frame_schema)
    rows = calibrate(frame(good + bad), table, BATCH).to_dicts()
    by_judge = {r["judge"]: r for r in rows}
    assert set(by_judge) == {"good", "bad", PANEL}
    assert [r["judge"] for r in rows if r["sets_labels"]] == [PANEL]
    assert by_judge["good"]["canary_accuracy"] == 1.0
    assert by_judge["bad"]["canary_accuracy"] == 0.0
    assert by_judge[PANEL]["canary_accuracy"] == 0.5  # mean scores tie: 3 vs 3
    assert math.isclose(by_judge[PANEL]["canary_ci_low"], wilson_interval(3, 6)[0])


def test_no_judge_no_rows() -> None:
    empty = pl.DataFrame(schema=TABLES["ratings"].frame_schema)
    assert calibrate(empty, pl.DataFrame(schema=TABLES["canaries"].frame_schema), BATCH).is_empty()
