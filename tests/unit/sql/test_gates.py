"""The quality gates in dbt_like_sql/checks/, run on crafted rows in a tmp DuckDB.

Each gate gets a batch it passes (no rows) and one it fails (the exact offending rows); the
filter gates must also drop exactly their pairs from `collect_pairs`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
import pytest

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.export.dataset import collect_pairs
from prefgen_dagster.sql.project import load_project
from prefgen_dagster.sql.vars import sql_vars
from prefgen_dagster.storage.store import Storage
from tests.unit.rows import (
    build_models,
    completion_row,
    evolved_row,
    instruction_row,
    pair_row,
    rating_row,
)

BATCH = "b1.jsonl"
OTHER = "b2.jsonl"

Insert = Callable[[str, list[dict[str, Any]]], None]

CHECKS = load_project().checks
GATES = {check.name: check for check in CHECKS}


def run_gate(
    storage: Storage, config: PipelineConfig, name: str, batch: str = BATCH, **values: Any
) -> pl.DataFrame:
    build_models(storage, config, batch, "candidates")
    return storage.query(*GATES[name].render(batch, {**sql_vars(config), **values}))


# --- crafting rows -------------------------------------------------------------------------


def instruction(iid: str, batch: str = BATCH) -> dict:
    return instruction_row(iid, batch)


def completion(
    cid: str, iid: str, text: str | None, finish_reason: str = "stop", batch: str = BATCH
) -> dict:
    return completion_row(cid, iid, batch, model="gen", text=text, finish_reason=finish_reason)


def evolved(
    cid: str, iid: str, text: str | None, finish_reason: str = "stop", batch: str = BATCH
) -> dict:
    return evolved_row(cid, iid, batch, model="gen", text=text, finish_reason=finish_reason)


def rating(
    cid: str,
    value: int | None,
    judge: str = "j1",
    aspect: str = "overall",
    order: int = 0,
    batch: str = BATCH,
) -> dict:
    return rating_row(cid, "i1", value, batch, judge, aspect, order)


def add_pair(
    insert: Insert,
    pid: str,
    chosen_text: str | None,
    rejected_text: str | None,
    chosen_rating: float = 5.0,
    rejected_rating: float = 2.0,
    batch: str = BATCH,
    evolved_chosen: bool = False,
) -> None:
    """An instruction of its own, its chosen (`pid-c`) and rejected (`pid-r`) texts, the pair."""
    iid, chosen, rejected = f"{pid}-i", f"{pid}-c", f"{pid}-r"
    insert("instructions", [instruction(iid, batch)])
    if evolved_chosen:
        insert("evolved_completions", [evolved(chosen, iid, chosen_text, batch=batch)])
    else:
        insert("completions", [completion(chosen, iid, chosen_text, batch=batch)])
    insert("completions", [completion(rejected, iid, rejected_text, batch=batch)])
    insert(
        "ratings",
        [
            rating_row(cid, iid, round(value), batch, "j1", "overall", 0)
            for cid, value in ((chosen, chosen_rating), (rejected, rejected_rating))
        ],
    )
    insert(
        "dpo_pairs", [pair_row(pid, iid, chosen, rejected, chosen_rating, rejected_rating, batch)]
    )


def distinct_texts(pid: str) -> tuple[str, str]:
    """A chosen and a rejected text with little in common (word-set Jaccard 1/7)."""
    return f"{pid} explains tides clearly", f"{pid} talks about cheese"


def blocking_checks_pass(storage: Storage, batch: str, failing: tuple[str, ...] = ()) -> None:
    """`check_results` rows for the batch's blocking checks, so the export considers it."""
    for check in CHECKS:
        if check.blocking:
            storage.record_check(
                {
                    "batch_id": batch,
                    "check_name": check.name,
                    "asset": check.asset,
                    "severity": check.severity,
                    "blocking": check.blocking,
                    "passed": check.name not in failing,
                    "failing_rows": int(check.name in failing),
                }
            )


# --- loading -------------------------------------------------------------------------------


GATE_HEADERS = {
    "rating_outliers": ("ratings", "WARN", False),
    "length_bias": ("dpo_pairs", "WARN", False),
    "input_reconciliation": ("instructions", "ERROR", True),
}


def test_gate_files_load_with_their_headers(config: PipelineConfig) -> None:
    project = load_project()
    headers = {c.name: (c.asset, c.severity, c.blocking) for c in project.checks}
    assert {name: headers.get(name) for name in GATE_HEADERS} == GATE_HEADERS
    refs = {c.name: set(c.refs) for c in project.checks}
    assert refs["input_reconciliation"] == {"batches", "instructions", "rejected_inputs"}
    assert refs["rating_outliers"] == {"candidates", "ratings"}
    for check in project.checks:
        assert check.description
        check.render(BATCH, sql_vars(config))  # every var it reads is a config value


# --- near_duplicate_pairs ------------------------------------------------------------------

TEN_WORDS = "one two three four five six seven eight nine ten"


def near_duplicate_batch(insert: Insert, batch: str = BATCH, fail: bool = False) -> None:
    add_pair(insert, "far", *distinct_texts("far"), batch=batch)
    # 9 shared words of 11: 0.818, below 0.9
    add_pair(insert, "close", TEN_WORDS, TEN_WORDS.replace("ten", "eleven"), batch=batch)
    if fail:
        # the same words up to case and punctuation: 1.0
        add_pair(insert, "same", "The moon pulls the sea.", "the MOON pulls; the sea!", batch=batch)
        # 9 shared words of 10: exactly the threshold; chosen is an EvolQuality rewrite
        nine_words = TEN_WORDS.removesuffix(" ten")
        add_pair(insert, "edge", TEN_WORDS, nine_words, batch=batch, evolved_chosen=True)
        add_pair(insert, "empty", None, "", batch=batch)  # two empty texts are identical


def near_duplicates(
    storage: Storage, config: PipelineConfig, batch: str = BATCH, **values: Any
) -> pl.DataFrame:
    """The pairs the pair rule drops as near duplicates, named by their `add_pair` id."""
    build_models(storage, config, batch, "candidates", "judge_scores")
    model = load_project().models["candidate_pairs"]
    frame = storage.query(*model.render(batch, {**sql_vars(config), **values}))
    return (
        frame.filter(pl.col("dropped_because").str.starts_with("near_duplicate"))
        .with_columns(pair_id=pl.col("instruction_id").str.strip_suffix("-i"))
        .sort("pair_id")
    )


def test_near_duplicate_pairs_pass(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    near_duplicate_batch(insert_rows)
    near_duplicate_batch(insert_rows, OTHER, fail=True)
    # Another batch reuses this batch's completion id for a copy of the chosen text: a join
    # that is not scoped to the batch would see a duplicate.
    insert_rows("completions", [completion("far-r", "far-i", distinct_texts("far")[0], batch="b3")])
    assert near_duplicates(storage, config).height == 0
    assert near_duplicates(storage, config, OTHER).height == 2


def test_near_duplicate_pairs_are_dropped(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    near_duplicate_batch(insert_rows, fail=True)
    rows = near_duplicates(storage, config)
    # The pair of two empty texts is never made: an empty text is never chosen.
    assert rows["pair_id"].to_list() == ["edge", "same"]
    assert rows["word_similarity"].to_list() == pytest.approx([0.9, 1.0])
    final = build_models(storage, config, BATCH)
    assert sorted(final["instruction_id"].str.strip_suffix("-i").to_list()) == ["close", "far"]


def test_near_duplicate_threshold_is_the_config_value(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    near_duplicate_batch(insert_rows)
    rows = near_duplicates(storage, config, near_duplicate_similarity=0.8)
    assert rows["pair_id"].to_list() == ["close"]
    assert rows["word_similarity"].to_list() == pytest.approx([9 / 11])


def test_near_duplicate_pairs_use_embeddings_where_stored(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    # Word overlap would call "far" distinct and "close" near (0.818 at 0.8); the stored
    # embeddings say the opposite, and they decide when both texts have one.
    near_duplicate_batch(insert_rows)
    vectors = {"far-c": [1.0, 0.0], "far-r": [0.98, 0.199], "close-c": [1.0, 0.0]}
    vectors["close-r"] = [0.0, 1.0]
    with storage.connect() as con:
        for cid, vector in vectors.items():
            con.execute(
                "UPDATE completions SET embedding = ? WHERE completion_id = ?", [vector, cid]
            )
    rows = near_duplicates(storage, config, near_duplicate_similarity=0.8)
    assert rows["pair_id"].to_list() == ["far"]
    assert rows["cosine"].to_list() == pytest.approx([0.98], abs=1e-3)
    assert near_duplicates(storage, config, near_duplicate_cosine=0.99).height == 0


# --- rating_outliers -----------------------------------------------------------------------

LONG = "a complete and careful answer " * 10
ASPECTS = ("overall", "honesty")


def rating_outlier_batch(insert: Insert, batch: str = BATCH, fail: bool = False) -> None:
    texts = {
        "short-low": ("ok", "stop"),  # near-empty, but rated low
        "cut-low": (LONG, "length"),  # truncated, but rated low
        "twenty": ("x" * 20, "stop"),  # not below short_completion_chars (20)
        "panel": (LONG, "stop"),
        "lone": (LONG, "stop"),
        "unparsed": (LONG, "stop"),
        "empty": ("", "stop"),
        "outvoted": (LONG, "stop"),
        "split": (LONG, "stop"),
    }
    insert("completions", [completion(c, "i1", t, f, batch) for c, (t, f) in texts.items()])
    insert("evolved_completions", [evolved("cut-high", "i1", LONG, "length", batch)])
    ratings = [
        rating("short-low", 4, order=0),
        rating("short-low", 3, order=1),  # mean 3.5 < high_rating 4
        rating("cut-low", 3),
        rating("twenty", 5),
        rating("panel", 5, "j1"),
        rating("panel", 4, "j2"),
        rating("panel", 3, "j3"),  # j1 and j3 are 1.5 from the others
        rating("lone", 1, "j1"),  # one judge: nobody to disagree with
        rating("unparsed", 5, "j1"),
        rating("unparsed", None, "j2"),  # unparseable: j2 has no usable rating
    ]
    if fail:
        ratings += [
            rating("empty", 5),
            rating("cut-high", 4, order=0),
            rating("cut-high", 4, order=1),  # mean exactly high_rating
            # j1 rates 5 on two aspects, j2 and j3 rate 2: only j1 is 2+ from the others
            *[rating("outvoted", 5, "j1", aspect) for aspect in ASPECTS],
            *[rating("outvoted", 2, judge, aspect) for judge in ("j2", "j3") for aspect in ASPECTS],
            # two judges exactly judge_outlier_gap apart: both are listed
            rating("split", 5, "j1"),
            rating("split", 3, "j2"),
        ]
    insert("ratings", [{**r, "batch_id": batch} for r in ratings])


def test_rating_outliers_pass(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    rating_outlier_batch(insert_rows)
    rating_outlier_batch(insert_rows, OTHER, fail=True)
    # This batch's completions rated again under the other batch do not count.
    insert_rows("ratings", [rating("panel", 1, "j4", batch=OTHER)])
    assert run_gate(storage, config, "rating_outliers").height == 0


def test_rating_outliers_fail(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    rating_outlier_batch(insert_rows, fail=True)
    rows = run_gate(storage, config, "rating_outliers").sort("kind", "completion_id", "judge")
    assert rows.height == 5
    assert list(rows.select("kind", "completion_id", "judge", "rating").iter_rows()) == [
        ("high_rated_defect", "cut-high", None, 4.0),
        ("high_rated_defect", "empty", None, 5.0),
        ("judge_outlier", "outvoted", "j1", 5.0),
        ("judge_outlier", "split", "j1", 5.0),
        ("judge_outlier", "split", "j2", 3.0),
    ]
    assert rows["others_mean"].to_list() == [None, None, 2.0, 3.0, 5.0]
    assert rows["chars"].to_list()[:2] == [len(LONG), 0]


# --- length_bias ---------------------------------------------------------------------------


def length_batch(insert: Insert, longer: int, total: int, batch: str = BATCH) -> None:
    """`total` pairs; the first `longer` have the longer chosen text, the rest equal lengths."""
    for n in range(total):
        chosen = "c" * (30 if n < longer else 20)
        add_pair(insert, f"p{n:02d}", chosen, "r" * 20, batch=batch)


def test_length_bias_pass_at_the_threshold(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    length_batch(insert_rows, longer=8, total=10)  # 0.8 is not above max_length_bias 0.8
    length_batch(insert_rows, longer=10, total=10, batch=OTHER)
    assert run_gate(storage, config, "length_bias").height == 0


def test_length_bias_pass_with_too_few_pairs(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    length_batch(insert_rows, longer=9, total=9)  # every one longer, but only 9 < 10 pairs
    length_batch(insert_rows, longer=5, total=5, batch=OTHER)  # 14 if the batches mixed
    assert run_gate(storage, config, "length_bias").height == 0
    assert run_gate(storage, config, "length_bias", min_pairs_for_length_bias=9).height == 9


def test_length_bias_fail(storage: Storage, insert_rows: Insert, config: PipelineConfig) -> None:
    length_batch(insert_rows, longer=9, total=10)
    length_batch(insert_rows, longer=0, total=10, batch=OTHER)  # would dilute the share to 0.45
    rows = run_gate(storage, config, "length_bias").sort("pair_id")
    assert rows.height == 9
    assert rows["pair_id"].to_list() == [f"p{n:02d}" for n in range(9)]
    assert rows["longer_share"].to_list() == pytest.approx([0.9] * 9)
    assert set(rows["pairs"].to_list()) == {10}
    assert set(rows.select("chosen_chars", "rejected_chars").iter_rows()) == {(30, 20)}


# --- input_reconciliation ------------------------------------------------------------------


def reconciliation_batch(
    insert: Insert,
    counts: tuple[int, int, int] = (5, 3, 2),
    stored: tuple[int, int] = (3, 2),
    batch: str = BATCH,
) -> None:
    """A `batches` row claiming (input, accepted, rejected), and `stored` instructions and
    rejected inputs actually written."""
    input_rows, accepted_rows, rejected_rows = counts
    insert(
        "batches",
        [
            {
                "batch_id": batch,
                "source": batch,
                "input_rows": input_rows,
                "accepted_rows": accepted_rows,
                "rejected_rows": rejected_rows,
            }
        ],
    )
    insert("instructions", [instruction(f"i{n}", batch) for n in range(stored[0])])
    insert(
        "rejected_inputs",
        [
            {"batch_id": batch, "source": batch, "source_row": n, "reason": "empty"}
            for n in range(stored[1])
        ],
    )


def test_input_reconciliation_pass(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    reconciliation_batch(insert_rows)
    reconciliation_batch(insert_rows, (9, 1, 1), (4, 7), batch=OTHER)  # wrong everywhere
    assert run_gate(storage, config, "input_reconciliation").height == 0


@pytest.mark.parametrize(
    ("counts", "stored"),
    [
        ((6, 3, 2), (3, 2)),  # input_rows is not accepted + rejected
        ((6, 4, 2), (3, 2)),  # one accepted row never reached instructions
        ((4, 3, 1), (3, 2)),  # a rejected input the batch row does not count
        ((0, 0, 0), (1, 0)),  # an empty batch with an instruction
    ],
    ids=["sum", "accepted", "rejected", "empty-batch"],
)
def test_input_reconciliation_fail(
    storage: Storage,
    insert_rows: Insert,
    config: PipelineConfig,
    counts: tuple[int, int, int],
    stored: tuple[int, int],
) -> None:
    reconciliation_batch(insert_rows, counts, stored)
    reconciliation_batch(insert_rows, batch=OTHER)  # a consistent batch stays out of it
    rows = run_gate(storage, config, "input_reconciliation")
    assert rows.height == 1
    row = rows.row(0, named=True)
    assert row["batch_id"] == BATCH
    assert (row["input_rows"], row["accepted_rows"], row["rejected_rows"]) == counts
    assert (row["stored_instructions"], row["stored_rejected_inputs"]) == stored


def test_input_reconciliation_holds_the_batch_back(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    add_pair(insert_rows, "p1", *distinct_texts("p1"))
    build_models(storage, config, BATCH)
    blocking = [check.name for check in CHECKS if check.blocking]
    blocking_checks_pass(storage, BATCH, failing=("input_reconciliation",))
    pairs, summary = collect_pairs(storage, blocking)
    assert (pairs.height, summary["batches_held_back"]) == (0, [BATCH])
    blocking_checks_pass(storage, BATCH)
    pairs, summary = collect_pairs(storage, blocking)
    assert (pairs["instruction_id"].to_list(), summary["batches_exported"]) == (["p1-i"], [BATCH])


# --- batches stay apart --------------------------------------------------------------------

FAILING = {
    "rating_outliers": (lambda insert, batch: rating_outlier_batch(insert, batch, True), 5),
    "length_bias": (lambda insert, batch: length_batch(insert, 9, 10, batch), 9),
    "input_reconciliation": (
        lambda insert, batch: reconciliation_batch(insert, (6, 3, 2), batch=batch),
        1,
    ),
}


@pytest.mark.parametrize("gate", sorted(FAILING))
def test_other_batches_never_leak_in(
    storage: Storage, insert_rows: Insert, config: PipelineConfig, gate: str
) -> None:
    build, offending = FAILING[gate]
    build(insert_rows, OTHER)
    assert run_gate(storage, config, gate, OTHER).height == offending
    assert run_gate(storage, config, gate, BATCH).height == 0
    assert run_gate(storage, config, gate, "x' OR 1=1 --").height == 0


# --- llm_request_reconciliation ------------------------------------------------------------


def test_llm_request_reconciliation_passes_answered_and_failed_with_a_reason(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    insert_rows(
        "completions",
        [
            completion_row(f"c{i}", "i1", BATCH, call_id=f"ok{i}") for i in range(19)
        ]  # 19 answered, 1 failed: 5 %, under the 10 % allowed
        + [completion_row("c-bad", "i1", BATCH, call_id="bad", text=None, error="Boom: no")],
    )
    storage.save_calls(
        [{"call_id": f"ok{i}", "model": "m", "request": "{}", "response": "r"} for i in range(19)]
    )
    storage.save_calls([], [{"call_id": "bad", "model": "m", "error": "Boom: no"}])
    assert run_gate(storage, config, "llm_request_reconciliation").height == 0


def test_llm_request_reconciliation_fails_a_lost_call_and_too_many_failures(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    insert_rows(
        "completions",
        [
            completion_row("c-ok", "i1", BATCH, call_id="ok"),
            completion_row("c-lost", "i1", BATCH, call_id="lost"),  # in neither table
            completion_row("c-bad", "i1", BATCH, call_id="bad", text=None, error="Boom: no"),
        ],
    )
    storage.save_calls([{"call_id": "ok", "model": "m", "request": "{}", "response": "r"}])
    storage.save_calls([], [{"call_id": "bad", "model": "m", "error": "Boom: no"}])
    offending = run_gate(storage, config, "llm_request_reconciliation")
    assert dict(offending.select("call_id", "reason").iter_rows()) == {
        "lost": "completions call lost: neither answered nor failed with a reason",
        "bad": "failed requests are 33.3% of the batch (above checks.max_failed_request_rate);"
        " first: Boom: no",
    }
