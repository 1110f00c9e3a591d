"""`summarize_ratings` and `histogram` on crafted frames (the `ratings` asset's metadata)."""

from __future__ import annotations

import polars as pl
import pytest

from prefgen_dagster.judge.summary import summarize_ratings
from prefgen_dagster.summaries import histogram

Row = tuple[str, str, str, str, str, int | None, str]
COLUMNS = ["instruction_id", "completion_id", "judge", "aspect", "order_name", "rating"]


def frame(rows: list[Row]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            **dict.fromkeys(COLUMNS[:5], pl.String),
            "rating": pl.Int64,
            "parse_status": pl.String,
        },
        orient="row",
    )


def ok(
    iid: str, cid: str, judge: str, rating: int, order: str = "original", aspect: str = "overall"
) -> Row:
    return (iid, cid, judge, aspect, order, rating, "ok")


def failed(
    iid: str, cid: str, judge: str, order: str = "original", status: str = "invalid_json"
) -> Row:
    return (iid, cid, judge, "overall", order, None, status)


# --- parse failures ------------------------------------------------------------------------


def test_parse_failure_rate_per_judge() -> None:
    rows = [
        ok("i1", "c1", "J1", 4),
        ok("i1", "c2", "J1", 2),
        ok("i1", "c3", "J1", 5),
        failed("i1", "c4", "J1", status="truncated_json"),
        ok("i1", "c1", "J2", 3),
        ok("i1", "c2", "J2", 3),
        failed("i1", "c3", "J2"),
        failed("i1", "c1", "J3", status="empty"),
        failed("i1", "c2", "J3", status="wrong_count"),
        ok("i2", "d1", "J4", 5),
    ]
    summary = summarize_ratings(frame(rows))
    assert summary["parse_failure_rate_per_judge"] == {
        "J1": 0.25,
        "J2": 0.3333,
        "J3": 1.0,
        "J4": 0.0,
    }
    assert list(summary["parse_failure_rate_per_judge"]) == ["J1", "J2", "J3", "J4"]


# --- order disagreement --------------------------------------------------------------------


def both_orders(
    iid: str, judge: str, original: dict, reversed_: dict, aspect: str = "overall"
) -> list[Row]:
    return [
        ok(iid, cid, judge, value, order, aspect)
        if value is not None
        else failed(iid, cid, judge, order)
        for order, ratings in (("original", original), ("reversed", reversed_))
        for cid, value in ratings.items()
    ]


def test_order_disagreement_on_the_best_completion() -> None:
    rows = [
        # Same best (c1) in both orders, other ratings shuffled: agreement.
        *both_orders("i1", "J1", {"c1": 5, "c2": 3, "c3": 1}, {"c1": 4, "c2": 1, "c3": 3}),
        # The orders pick different best completions: disagreement.
        *both_orders(
            "i1", "J1", {"c1": 5, "c2": 3, "c3": 1}, {"c1": 3, "c2": 5, "c3": 1}, "honesty"
        ),
        # A tie at the top in one order only: the best sets differ, disagreement.
        *both_orders("i2", "J1", {"d1": 4, "d2": 4}, {"d1": 4, "d2": 2}),
        # One order failed to parse entirely: not compared.
        *both_orders("i3", "J1", {"e1": 5, "e2": 1}, {"e1": None, "e2": None}),
        # One order only: not compared.
        ok("i4", "f1", "J1", 5),
        ok("i4", "f2", "J1", 2),
    ]
    summary = summarize_ratings(frame(rows))
    assert summary["order_comparisons"] == 3
    assert summary["order_disagreement_rate"] == 0.6667


def test_order_disagreement_is_per_judge_and_aspect() -> None:
    # J1 sees c1 best in the original order, J2 sees c2 best in the reversed one: different
    # keys, each with a single order, so nothing is compared.
    rows = [
        ok("i1", "c1", "J1", 5),
        ok("i1", "c2", "J1", 1),
        ok("i1", "c1", "J2", 1, "reversed"),
        ok("i1", "c2", "J2", 5, "reversed"),
    ]
    summary = summarize_ratings(frame(rows))
    assert (summary["order_comparisons"], summary["order_disagreement_rate"]) == (0, None)
    agreeing = both_orders("i1", "J1", {"c1": 5, "c2": 1}, {"c1": 4, "c2": 2})
    summary = summarize_ratings(frame(agreeing))
    assert (summary["order_comparisons"], summary["order_disagreement_rate"]) == (1, 0.0)


# --- agreement between judges -------------------------------------------------------------


def test_one_judge_has_no_agreement_figures() -> None:
    rows = [ok("i1", "c1", "J1", 5), ok("i1", "c2", "J1", 1), ok("i1", "c3", "J1", 3)]
    summary = summarize_ratings(frame(rows))
    assert summary["judge_alpha"] is None
    assert summary["judge_mean_tau"] is None


def test_perfect_agreement_after_averaging_orders_and_aspects() -> None:
    rows = [
        # J1's score per completion is its mean over orders, then over aspects.
        *both_orders("i1", "J1", {"c1": 1, "c2": 4, "c3": 5}, {"c1": 3, "c2": 4, "c3": 5}),
        *both_orders(
            "i1", "J1", {"c1": 2, "c2": 4, "c3": 3}, {"c1": 2, "c2": 4, "c3": 3}, "honesty"
        ),
        # -> c1 2.0, c2 4.0, c3 4.0; J2 says the same in one request per completion.
        ok("i1", "c1", "J2", 2),
        ok("i1", "c2", "J2", 4),
        ok("i1", "c3", "J2", 4),
        # A completion only J1 could rate (J2's answer failed) is not pairable.
        ok("i2", "d1", "J1", 1),
        ok("i2", "d2", "J1", 5),
        failed("i2", "d1", "J2"),
        ok("i2", "d2", "J2", 5),
    ]
    summary = summarize_ratings(frame(rows))
    assert summary["judge_alpha"] == 1.0
    assert summary["judge_mean_tau"] == 1.0


def test_opposite_judges() -> None:
    rows = [
        ok("i1", "c1", "J1", 1),
        ok("i1", "c2", "J1", 2),
        ok("i1", "c3", "J1", 3),
        ok("i1", "c1", "J2", 3),
        ok("i1", "c2", "J2", 2),
        ok("i1", "c3", "J2", 1),
    ]
    summary = summarize_ratings(frame(rows))
    # Pairable values 1,3 | 2,2 | 3,1: D_o = 16/6, D_e = 48/30, alpha = 1 - 5*16/48.
    assert summary["judge_alpha"] == -0.6667
    assert summary["judge_mean_tau"] == -1.0


def test_tau_is_averaged_over_instructions() -> None:
    rows = [
        # i1: J2 swaps the last two (tau = 1/3); i2: same ranking (tau = 1).
        ok("i1", "c1", "J1", 1),
        ok("i1", "c2", "J1", 3),
        ok("i1", "c3", "J1", 5),
        ok("i1", "c1", "J2", 1),
        ok("i1", "c2", "J2", 5),
        ok("i1", "c3", "J2", 3),
        ok("i2", "d1", "J1", 2),
        ok("i2", "d2", "J1", 4),
        ok("i2", "d1", "J2", 1),
        ok("i2", "d2", "J2", 5),
    ]
    assert summarize_ratings(frame(rows))["judge_mean_tau"] == pytest.approx(0.6667)


# --- histogram -----------------------------------------------------------------------------


def test_histogram_bins_and_nulls() -> None:
    assert histogram([0.05, 0.15, 0.19, None, 0.0, 1.0, None, 0.95], 0.1) == {
        "0.00": 2,
        "0.10": 2,
        "0.90": 1,
        "1.00": 1,
        "null": 2,
    }
    margins = histogram([1.0, 1.5, 2.0, 0.5, 4.0, 1.25, 1.75], 0.5)
    assert margins == {"0.50": 1, "1.00": 2, "1.50": 2, "2.00": 1, "4.00": 1}
    assert list(margins) == sorted(margins)
    assert histogram([], 0.5) == {}
    assert histogram([None], 0.5) == {"null": 1}


def test_histogram_puts_a_value_on_a_bin_edge_in_that_bin() -> None:
    assert histogram([0.3, 0.6, 0.7, 3 / 10], 0.1) == {"0.30": 2, "0.60": 1, "0.70": 1}
