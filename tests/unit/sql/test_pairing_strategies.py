"""The dpo_pairs SQL model under each `pairing.strategy`, on crafted rows in a tmp DuckDB.

Every batch here also has rows of another batch (same instruction and completion ids, other
scores) that would change the pairs if they leaked in.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from typing import Any

import polars as pl
import pytest

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.storage.store import Storage
from tests.unit.rows import build_models, completion_row, rating_row

BATCH = "batch-1.jsonl"
OTHER = "batch-2.jsonl"

Insert = Callable[[str, list[dict[str, Any]]], None]
MakeConfig = Callable[..., PipelineConfig]


# --- crafting rows ---------------------------------------------------------------------------


def completion(cid: str, iid: str, batch: str = BATCH) -> dict[str, Any]:
    return completion_row(cid, iid, batch)


def evolved(cid: str, iid: str, root: str, batch: str = BATCH) -> dict[str, Any]:
    return {
        "batch_id": batch,
        "completion_id": cid,
        "instruction_id": iid,
        "parent_completion_id": root,
        "root_completion_id": root,
        "model": "evolver",
        "mutation": "details",
        "round": 1,
        "sampling": "{}",
        "template_version": "t",
        "text": f"rewrite {cid}",
        "call_id": f"call-{cid}",
    }


def rating(
    cid: str,
    iid: str,
    value: int | None,
    judge: str = "judge-1",
    aspect: str = "overall",
    order: int = 0,
    batch: str = BATCH,
) -> dict[str, Any]:
    return rating_row(cid, iid, value, batch, judge, aspect, order)


def pooled(
    insert: Insert, iid: str, scores: dict[str, int | None | list[int | None]], batch: str = BATCH
) -> None:
    """Pooled completions with one judge's rating(s) each (a list: one rating per order)."""
    insert("completions", [completion(cid, iid, batch) for cid in scores])
    insert(
        "ratings",
        [
            rating(cid, iid, value, order=order, batch=batch)
            for cid, values in scores.items()
            for order, value in enumerate(values if isinstance(values, list) else [values])
        ],
    )


def rewrite(insert: Insert, cid: str, iid: str, root: str, value: int, batch: str = BATCH) -> None:
    insert("evolved_completions", [evolved(cid, iid, root, batch)])
    insert("ratings", [rating(cid, iid, value, batch=batch)])


class Buffered:
    """An `insert` that collects rows and writes each table once (one connection each)."""

    def __init__(self, insert: Insert) -> None:
        self.insert = insert
        self.rows: dict[str, list[dict[str, Any]]] = {}

    def __call__(self, table: str, rows: list[dict[str, Any]]) -> None:
        self.rows.setdefault(table, []).extend(rows)

    def flush(self) -> None:
        for table, rows in self.rows.items():
            self.insert(table, rows)
        self.rows.clear()


def pairs(storage: Storage, config: PipelineConfig, batch: str = BATCH) -> pl.DataFrame:
    frame = build_models(storage, config, batch)
    return frame.sort("instruction_id", "chosen_completion_id", "rejected_completion_id")


def triples(frame: pl.DataFrame) -> list[tuple[str, str, str]]:
    return list(
        frame.select("instruction_id", "chosen_completion_id", "rejected_completion_id").iter_rows()
    )


def strategy(make_config: MakeConfig, name: str, seed: int = 0) -> PipelineConfig:
    return make_config(pairing={"strategy": name, "min_margin": 1.0, "seed": seed})


# Scores of the shared batch (one judge, one aspect); NULL = a failed parse.
I1_POOLED = {"a1": 2, "a2": 5, "a3": 3, "a4": 1}
I1_EVOLVED = {"ea1": ("a1", 4), "ea2": ("a2", 3), "ea3": ("a3", 3)}  # rewrite: (root, score)
I1_SCORES = {**I1_POOLED, **{cid: score for cid, (_, score) in I1_EVOLVED.items()}}


@pytest.fixture
def batch(insert_rows: Insert) -> None:
    insert_rows = Buffered(insert_rows)
    # i1: four pooled completions and three rewrites (better than, worse than, equal to root).
    pooled(insert_rows, "i1", I1_POOLED)
    for cid, (root, score) in I1_EVOLVED.items():
        rewrite(insert_rows, cid, "i1", root, score)
    pooled(insert_rows, "i2-all-equal", {"b1": 4, "b2": 4, "b3": 4})
    pooled(insert_rows, "i3-single", {"s1": 5})
    # i4: n1 only ever failed to parse; n2 has one failure and one 4; n3 a 2.
    pooled(insert_rows, "i4-nulls", {"n1": [None, None], "n2": [None, 4], "n3": 2})
    # i5: a tie at the top is broken by completion id, never paired with itself.
    pooled(insert_rows, "i5-top-tie", {"t2": 5, "t1": 5, "t3": 2})
    pooled(insert_rows, "i6-only-nulls", {"u1": None, "u2": None})

    # Another batch: same instruction ids, completion ids reused, other scores.
    pooled(insert_rows, "i1", {"a1": 5, "a4": 5, "x1": 1}, batch=OTHER)
    pooled(insert_rows, "i2-all-equal", {"b1": 5, "b2": 1}, batch=OTHER)
    rewrite(insert_rows, "ea2", "i1", "a2", 5, batch=OTHER)
    rewrite(insert_rows, "ea-other", "i1", "a4", 5, batch=OTHER)
    # Ratings of this batch's completions filed under the other batch.
    insert_rows("ratings", [rating("a4", "i1", 5, order=1, batch=OTHER)])
    insert_rows("ratings", [rating("ea3", "i1", 1, batch=OTHER)])
    insert_rows.flush()


# --- every strategy ----------------------------------------------------------------------


STRATEGIES = ["best_vs_worst", "best_vs_random_lower", "all_pairs", "evolved_vs_original"]


@pytest.mark.parametrize("name", STRATEGIES)
def test_invariants_of_every_strategy(
    storage: Storage, make_config: MakeConfig, batch: None, name: str
) -> None:
    frame = pairs(storage, strategy(make_config, name))
    assert frame.height > 0
    assert set(frame["strategy"]) == {name}
    rows = frame.to_dicts()
    for row in rows:
        assert row["chosen_rating"] > row["rejected_rating"]  # ties never paired
        assert row["margin"] == row["chosen_rating"] - row["rejected_rating"]
        assert row["judge_agreement"] == 1.0  # one judge, who rated chosen higher
    ids = {row["chosen_completion_id"] for row in rows} | {
        row["rejected_completion_id"] for row in rows
    }
    # Never: an all-equal, single, unrated or other-batch-only completion.
    assert ids.isdisjoint({"b1", "b2", "b3", "s1", "n1", "u1", "u2", "x1", "ea-other"})
    assert len(set(frame["pair_id"])) == frame.height
    # Scores are this batch's: the other batch's extra ratings changed nothing.
    scores = {**I1_SCORES, "n2": 4, "n3": 2, "t1": 5, "t2": 5, "t3": 2}
    for row in rows:
        assert row["chosen_rating"] == scores[row["chosen_completion_id"]]
        assert row["rejected_rating"] == scores[row["rejected_completion_id"]]


def test_best_vs_worst(storage: Storage, make_config: MakeConfig, batch: None) -> None:
    frame = pairs(storage, strategy(make_config, "best_vs_worst"))
    assert list(frame.select("instruction_id", "chosen_completion_id",
                             "rejected_completion_id", "margin").iter_rows()) == [
        ("i1", "a2", "a4", 4.0),
        ("i4-nulls", "n2", "n3", 2.0),
        ("i5-top-tie", "t1", "t3", 3.0),
    ]  # fmt: skip
    first = frame.row(0, named=True)
    assert (first["chosen_origin"], first["rejected_origin"]) == ("pooled", "pooled")
    assert (first["chosen_model"], first["rejected_model"]) == ("model-of-a2", "model-of-a4")


def test_other_batch_gets_its_own_pairs(
    storage: Storage, make_config: MakeConfig, batch: None
) -> None:
    frame = pairs(storage, strategy(make_config, "all_pairs"), OTHER)
    assert triples(frame) == [
        ("i1", "a1", "x1"),
        ("i1", "a4", "x1"),
        ("i1", "ea-other", "x1"),
        ("i1", "ea2", "x1"),
        ("i2-all-equal", "b1", "b2"),
    ]


def test_all_pairs(storage: Storage, make_config: MakeConfig, batch: None) -> None:
    frame = pairs(storage, strategy(make_config, "all_pairs"))
    i1 = frame.filter(pl.col("instruction_id") == "i1")
    ordered_pairs = [
        (a, b) if I1_SCORES[a] > I1_SCORES[b] else (b, a)
        for a, b in combinations(sorted(I1_SCORES), 2)
        if I1_SCORES[a] != I1_SCORES[b]
    ]
    assert len(ordered_pairs) == 18  # 21 pairs of 7, less the 3 among the three 3s
    assert sorted(i1.select("chosen_completion_id", "rejected_completion_id").iter_rows()) == (
        sorted(ordered_pairs)
    )
    # Several rejected per chosen: the best (a2, 5) beats all six others.
    assert sorted(i1.filter(pl.col("chosen_completion_id") == "a2")["rejected_completion_id"]) == [
        "a1", "a3", "a4", "ea1", "ea2", "ea3"
    ]  # fmt: skip
    assert triples(frame.filter(pl.col("instruction_id") != "i1")) == [
        ("i4-nulls", "n2", "n3"),
        ("i5-top-tie", "t1", "t3"),
        ("i5-top-tie", "t2", "t3"),
    ]
    assert frame.height == 18 + 3
    origins = set(i1.select("chosen_origin", "rejected_origin").iter_rows())
    assert origins == {
        ("pooled", "pooled"),
        ("evolved", "pooled"),
        ("pooled", "evolved"),
        ("evolved", "evolved"),
    }


def test_evolved_vs_original(storage: Storage, make_config: MakeConfig, batch: None) -> None:
    frame = pairs(storage, strategy(make_config, "evolved_vs_original"))
    # ea1 (4) beat its root a1 (2); ea2 (3) lost to a2 (5); ea3 (3) tied a3 (3).
    assert triples(frame) == [("i1", "ea1", "a1")]
    row = frame.row(0, named=True)
    assert (row["chosen_origin"], row["rejected_origin"]) == ("evolved", "pooled")
    assert (row["chosen_rating"], row["rejected_rating"], row["margin"]) == (4.0, 2.0, 2.0)


def test_evolved_vs_original_never_pairs_a_rewrite_with_another_completion(
    storage: Storage, make_config: MakeConfig, insert_rows: Insert
) -> None:
    # The rewrite beats everyone but its root, which scored higher still.
    pooled(insert_rows, "i1", {"r1": 5, "r2": 1, "r3": 2})
    rewrite(insert_rows, "e1", "i1", "r1", 4)
    assert pairs(storage, strategy(make_config, "evolved_vs_original")).height == 0


# --- best_vs_random_lower ------------------------------------------------------------------


def random_lower_batch(insert: Insert, instructions: int = 10) -> None:
    buffered = Buffered(insert)
    for i in range(instructions):
        iid = f"i{i:02d}"
        pooled(buffered, iid, {f"{iid}-best": 5, **{f"{iid}-c{v}": v for v in (1, 2, 3, 4)}})
    buffered.flush()


def picks(storage: Storage, make_config: MakeConfig, seed: int) -> dict[str, str]:
    frame = pairs(storage, strategy(make_config, "best_vs_random_lower", seed))
    return dict(frame.select("instruction_id", "rejected_completion_id").iter_rows())


def test_best_vs_random_lower_is_seeded(
    storage: Storage, make_config: MakeConfig, insert_rows: Insert
) -> None:
    random_lower_batch(insert_rows)
    frame = pairs(storage, strategy(make_config, "best_vs_random_lower", 3))
    assert frame.height == 10  # one pair per instruction
    for row in frame.iter_rows(named=True):
        assert row["chosen_completion_id"] == f"{row['instruction_id']}-best"
        assert row["chosen_rating"] == 5.0
        assert row["rejected_rating"] < row["chosen_rating"]
        assert row["rejected_completion_id"].startswith(row["instruction_id"])
    assert picks(storage, make_config, 3) == picks(storage, make_config, 3)
    by_seed = [picks(storage, make_config, seed) for seed in (0, 1, 2)]
    assert by_seed[0] != by_seed[1] or by_seed[0] != by_seed[2]
    # Not degenerate: the draws over seeds and instructions hit more than the worst.
    drawn = {cid.rsplit("-", 1)[1] for pick in by_seed for cid in pick.values()}
    assert len(drawn) >= 3


def test_best_vs_random_lower_on_the_shared_batch(
    storage: Storage, make_config: MakeConfig, batch: None
) -> None:
    frame = pairs(storage, strategy(make_config, "best_vs_random_lower", 7))
    chosen = dict(frame.select("instruction_id", "chosen_completion_id").iter_rows())
    assert chosen == {"i1": "a2", "i4-nulls": "n2", "i5-top-tie": "t1"}
    rejected = dict(frame.select("instruction_id", "rejected_completion_id").iter_rows())
    assert rejected["i4-nulls"] == "n3"
    assert rejected["i5-top-tie"] == "t3"  # not its tied twin t2
    assert rejected["i1"] in {"a1", "a3", "a4", "ea1", "ea2", "ea3"}


# --- scores over judges, aspects and orders; judge agreement ------------------------------

# (judge, aspect) -> (rating in order 0, rating in order 1); None = a failed parse.
PANEL_CHOSEN = {
    ("J1", "helpfulness"): (5, 4),  # 4.5
    ("J1", "honesty"): (3, 3),  # 3.0   -> J1: 3.75
    ("J2", "helpfulness"): (4, 2),  # 3.0
    ("J2", "honesty"): (5, None),  # 5.0   -> J2: 4.0
}
PANEL_REJECTED = {
    ("J1", "helpfulness"): (2, 1),  # 1.5
    ("J1", "honesty"): (2, 2),  # 2.0   -> J1: 1.75
    ("J2", "helpfulness"): (4, 3),  # 3.5
    ("J2", "honesty"): (5, 5),  # 5.0   -> J2: 4.25
}


def panel_rows(cid: str, iid: str, panel: dict, batch: str = BATCH) -> list[dict[str, Any]]:
    return [
        rating(cid, iid, value, judge=judge, aspect=aspect, order=order, batch=batch)
        for (judge, aspect), values in panel.items()
        for order, value in enumerate(values)
    ]


def test_scores_average_orders_then_judges_and_aspects(
    storage: Storage, make_config: MakeConfig, insert_rows: Insert
) -> None:
    insert_rows("completions", [completion("p", "i1"), completion("q", "i1")])
    insert_rows(
        "ratings", panel_rows("p", "i1", PANEL_CHOSEN) + panel_rows("q", "i1", PANEL_REJECTED)
    )
    # Both judges agree on another instruction.
    pooled(insert_rows, "i2", {"hi": 5, "lo": 1})
    insert_rows("ratings", [rating("hi", "i2", 4, judge="J2"), rating("lo", "i2", 2, judge="J2")])
    # The other batch rates q far higher: it must not count.
    insert_rows("ratings", [rating("q", "i1", 5, judge="J1", aspect="helpfulness", order=1,
                                   batch=OTHER)])  # fmt: skip

    # A margin of 0.875 is kept only under a lower min_margin than the default 1.0.
    frame = pairs(storage, make_config(pairing={"strategy": "best_vs_worst", "min_margin": 0.5}))
    rows = {row["instruction_id"]: row for row in frame.iter_rows(named=True)}
    disagreed = rows["i1"]
    assert (disagreed["chosen_completion_id"], disagreed["rejected_completion_id"]) == ("p", "q")
    # Mean of the four (judge, aspect) order-means: not the flat mean of the seven numbers
    # (26 / 7) nor the mean of per-judge flat means.
    assert disagreed["chosen_rating"] == 3.875
    assert disagreed["rejected_rating"] == 3.0
    assert disagreed["margin"] == 0.875
    # J1 puts p above q (3.75 > 1.75), J2 does not (4.0 < 4.25).
    assert disagreed["judge_agreement"] == 0.5
    agreed = rows["i2"]
    assert (agreed["chosen_rating"], agreed["rejected_rating"]) == (4.5, 1.5)
    assert agreed["judge_agreement"] == 1.0


def test_judge_agreement_counts_only_judges_who_rated_both(
    storage: Storage, make_config: MakeConfig, insert_rows: Insert
) -> None:
    pooled(insert_rows, "i1", {"hi": 5, "lo": 2})
    # J2 rated only `hi` (its rating of `lo` failed to parse); J3 ties them.
    insert_rows(
        "ratings", [rating("hi", "i1", 3, judge="J2"), rating("lo", "i1", None, judge="J2")]
    )
    insert_rows("ratings", [rating("hi", "i1", 3, judge="J3"), rating("lo", "i1", 3, judge="J3")])
    row = pairs(storage, strategy(make_config, "best_vs_worst")).row(0, named=True)
    assert (row["chosen_rating"], row["rejected_rating"]) == (11 / 3, 2.5)
    assert row["judge_agreement"] == 0.5  # judge-1 yes, J3 tie: no; J2 not counted


def test_no_pairs_without_a_strict_order(
    storage: Storage, make_config: MakeConfig, insert_rows: Insert
) -> None:
    pooled(insert_rows, "equal", {"e1": 3, "e2": 3})
    pooled(insert_rows, "single", {"s1": 4})
    pooled(insert_rows, "unrated", {"u1": None, "u2": 5})
    for name in STRATEGIES:
        assert pairs(storage, strategy(make_config, name)).height == 0, name
