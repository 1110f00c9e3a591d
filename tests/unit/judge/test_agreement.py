"""Agreement statistics: hand-computed values and Krippendorff's published interval example."""

from __future__ import annotations

import math

import pytest

from prefgen_dagster.judge.agreement import (
    best_items,
    kendall_tau_b,
    krippendorff_alpha_interval,
    mean_pairwise_tau,
    order_disagreement,
)

# --- kendall_tau_b -----------------------------------------------------------------------


def test_tau_perfect_and_reversed() -> None:
    assert kendall_tau_b([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau_b([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        # 4 concordant, 1 tied in x only, 1 tied in y only: 4 / sqrt(5 * 5).
        ([1, 2, 2, 3], [1, 2, 3, 3], 0.8),
        # 4 concordant, 1 discordant, 1 tied on both sides (counts in both corrections).
        ([1, 2, 3, 3], [2, 1, 3, 3], 0.6),
        # 5 concordant, 1 tie in x only: 5 / sqrt(5 * 6).
        ([1, 1, 2, 3], [1, 2, 3, 4], 5 / math.sqrt(30)),
    ],
)
def test_tau_b_tie_correction(x: list[float], y: list[float], expected: float) -> None:
    assert kendall_tau_b(x, y) == pytest.approx(expected)
    assert kendall_tau_b(y, x) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("x", "y"),
    [([], []), ([3], [4]), ([2, 2, 2], [1, 2, 3]), ([1, 2, 3], [5, 5, 5]), ([1, 1], [2, 2])],
)
def test_tau_undefined(x: list[float], y: list[float]) -> None:
    assert kendall_tau_b(x, y) is None


def test_tau_rejects_unpaired_scores() -> None:
    with pytest.raises(ValueError):
        kendall_tau_b([1, 2, 3], [1, 2])


# --- mean_pairwise_tau -------------------------------------------------------------------


def test_mean_pairwise_tau_over_judge_pairs_and_groups() -> None:
    scores = {
        "A": {("g1", "a"): 1, ("g1", "b"): 2, ("g1", "c"): 3, ("g2", "d"): 1, ("g2", "e"): 2},
        "B": {("g1", "a"): 1, ("g1", "b"): 3, ("g1", "c"): 2, ("g2", "d"): 2, ("g2", "e"): 1},
        # No score for c; its two g1 items are tied, so A-C and B-C are undefined on g1.
        "C": {("g1", "a"): 5, ("g1", "b"): 5, ("g2", "d"): 1, ("g2", "e"): 2},
    }
    # Defined: A-B g1 = 1/3, A-B g2 = -1, A-C g2 = 1, B-C g2 = -1.
    assert mean_pairwise_tau(scores) == pytest.approx((1 / 3 - 1 + 1 - 1) / 4)


def test_mean_pairwise_tau_keeps_groups_apart() -> None:
    # Pooled across groups this would be -1; within each group there is a single item.
    scores = {"A": {("g1", "x"): 1, ("g2", "x"): 2}, "B": {("g1", "x"): 2, ("g2", "x"): 1}}
    assert mean_pairwise_tau(scores) is None


@pytest.mark.parametrize(
    "scores",
    [
        {},
        {"A": {("g", "a"): 1, ("g", "b"): 2}},
        {"A": {("g", "a"): 1, ("g", "b"): 2}, "B": {("g", "c"): 1, ("g", "d"): 2}},
    ],
)
def test_mean_pairwise_tau_none_without_defined_pairs(scores: dict) -> None:
    assert mean_pairwise_tau(scores) is None


# --- krippendorff_alpha_interval ---------------------------------------------------------


def test_alpha_published_interval_example() -> None:
    """Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers,
    12 units, missing values; the interval alpha is reported as 0.849."""
    m = None
    table = {
        "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, m, m, m],
        "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, m, 3],
        "C": [m, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, m],
        "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, m],
    }
    units = {
        u: {coder: row[u] for coder, row in table.items() if row[u] is not None} for u in range(12)
    }
    alpha = krippendorff_alpha_interval(units)
    assert alpha is not None
    assert round(alpha, 3) == 0.849


@pytest.mark.parametrize(
    ("units", "expected"),
    [
        # n=4; within-unit ordered sum 2; all-pairs ordered sum 22: 1 - 3 * 2 / 22.
        ({1: {"a": 1, "b": 2}, 2: {"a": 3, "b": 3}}, 8 / 11),
        # A singleton unit is not pairable and must not enter D_e.
        ({1: {"a": 1, "b": 2}, 2: {"a": 3, "b": 3}, 3: {"a": 100}}, 8 / 11),
        # Three coders: within-unit sum 12 / (3 - 1) = 6; all-pairs 68: 1 - 4 * 6 / 68.
        ({1: {"a": 1, "b": 2, "c": 3}, 2: {"a": 4, "b": 4}}, 11 / 17),
        # Systematic disagreement goes below zero: 1 - 3 * 64 / 128.
        ({1: {"a": 1, "b": 5}, 2: {"a": 5, "b": 1}}, -0.5),
        ({1: {"a": 1, "b": 1}, 2: {"a": 3, "b": 3}}, 1.0),
    ],
)
def test_alpha_hand_computed(units: dict, expected: float) -> None:
    assert krippendorff_alpha_interval(units) == pytest.approx(expected)


@pytest.mark.parametrize(
    "units",
    [
        {},
        {1: {"a": 1}, 2: {"a": 5}, 3: {"b": 2}},  # nothing pairable
        {1: {"a": 3, "b": 3}, 2: {"a": 3, "b": 3, "c": 3}, 3: {"a": 1}},  # D_e = 0
    ],
)
def test_alpha_undefined(units: dict) -> None:
    assert krippendorff_alpha_interval(units) is None


# --- best_items / order_disagreement -----------------------------------------------------


@pytest.mark.parametrize(
    ("ratings", "expected"),
    [
        ({"a": 4, "b": 5, "c": 5, "d": None}, {"b", "c"}),
        ({"a": 0, "b": None}, {"a"}),
        ({"a": -2.0, "b": -1.0}, {"b"}),
        ({"a": None, "b": None}, set()),
        ({}, set()),
    ],
)
def test_best_items(ratings: dict, expected: set[str]) -> None:
    assert best_items(ratings) == frozenset(expected)


def test_order_disagreement() -> None:
    judged = {
        ("i1", "j", "help"): {"fwd": {"a": 5, "b": 3}, "rev": {"a": 5, "b": 4}},  # agree
        ("i2", "j", "help"): {"fwd": {"a": 5, "b": 3}, "rev": {"a": 3, "b": 5}},  # disagree
        ("i3", "j", "help"): {"fwd": {"a": 5, "b": 5}, "rev": {"a": 5, "b": 4}},  # tie vs a
        ("i4", "j", "help"): {"fwd": {"a": 5, "b": 1}},  # one order: skipped
        ("i5", "j", "help"): {"fwd": {"a": 4, "b": 2}, "rev": {"a": None, "b": None}},  # skipped
        ("i6", "j", "help"): {  # the third order breaks an otherwise agreeing pair
            "fwd": {"a": 5, "b": 2},
            "rev": {"a": 4, "b": 1},
            "mid": {"a": 1, "b": 2},
        },
        ("i7", "j", "help"): {"fwd": {"a": 2, "b": None}, "rev": {"a": 3, "b": 1}},  # agree
    }
    assert order_disagreement(judged) == (3, 5)


def test_order_disagreement_empty() -> None:
    assert order_disagreement({}) == (0, 0)
