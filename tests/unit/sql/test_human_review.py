"""People's verdicts in SQL: the human_agreement figures, the corrections in candidate_pairs
(flip, drop, both-bad), the judge_human_agreement gate and the reason in the export, on
crafted rows in a tmp DuckDB."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import polars as pl
import pytest

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.export.dataset import collect_pairs, to_trl_records
from prefgen_dagster.judge.calibration import wilson_interval
from prefgen_dagster.sql.project import column_lineage, load_project
from prefgen_dagster.sql.vars import sql_vars
from prefgen_dagster.storage.store import Storage
from tests.unit.rows import build_models, completion_row, instruction_row, rating_row

BATCH = "b1.jsonl"
OTHER = "b2.jsonl"
GATES = {check.name: check for check in load_project().checks}

Insert = Callable[[str, list[dict[str, Any]]], None]
MakeConfig = Callable[..., PipelineConfig]


def rated_pair(
    insert: Insert,
    name: str,
    scores: dict[str, tuple[int, int]],
    batch: str = BATCH,
    rejected_finish: str = "stop",
) -> None:
    """Instruction `name` with texts `name-c` and `name-r`; `scores`: judge -> (rating of
    name-c, rating of name-r). The pair rule makes (name-c, name-r) when they rate c higher."""
    insert("instructions", [instruction_row(name, batch)])
    insert(
        "completions",
        [
            completion_row(f"{name}-c", name, batch, text=f"{name} answers well"),
            completion_row(
                f"{name}-r", name, batch, text=f"{name} rambles", finish_reason=rejected_finish
            ),
        ],
    )
    insert(
        "ratings",
        [
            rating_row(cid, name, value, batch, judge)
            for judge, (chosen, rejected) in scores.items()
            for cid, value in ((f"{name}-c", chosen), (f"{name}-r", rejected))
        ],
    )


def pair_ids(storage: Storage, config: PipelineConfig, batch: str = BATCH) -> dict[str, str]:
    """{instruction: pair_id} of the pairs as the judge makes them (what a push sends)."""
    frame = build_models(storage, config, batch, "candidate_pairs")
    return dict(frame.select("instruction_id", "pair_id").iter_rows())


def give_verdicts(
    insert: Insert, pair_id: str, choices: dict[str, str], batch: str = BATCH
) -> None:
    """One verdict per annotator: annotator -> chosen, rejected, tie or both_bad."""
    insert(
        "human_verdicts",
        [
            {
                "batch_id": batch,
                "pair_id": pair_id,
                "annotator": annotator,
                "choice": choice,
                "chosen_shown": "left",
                "task_id": f"t-{pair_id}",
                "annotated_at": datetime(2026, 1, 1),
            }
            for annotator, choice in choices.items()
        ],
    )


def candidate_pairs(storage: Storage, batch: str = BATCH) -> dict[str, dict[str, Any]]:
    rows = storage.query("SELECT * FROM candidate_pairs WHERE batch_id = ?", [batch])
    return {row["instruction_id"]: row for row in rows.to_dicts()}


def agreement(storage: Storage, config: PipelineConfig) -> dict[str, dict[str, Any]]:
    build_models(storage, config, BATCH, "human_agreement")
    rows = storage.query("SELECT * FROM human_agreement WHERE batch_id = ?", [BATCH])
    return {row["judge"]: row for row in rows.to_dicts()}


def reviewed_batch(insert: Insert, storage: Storage, config: PipelineConfig) -> dict[str, str]:
    """Five pairs of one judge, each with its verdicts, and a verdict on a pair no longer made;
    returns {instruction: pair_id} as the verdicts name them.

    pair    margin  verdicts                          majority
    agree   3       chosen, chosen                    chosen
    flip    2       rejected, rejected                rejected
    bad     1       both_bad, both_bad, chosen        both_bad
    split   4       chosen, rejected                  none
    tie     1       tie                               tie
    """
    for name, scores in {
        "agree": (5, 2),
        "flip": (4, 2),
        "bad": (3, 2),
        "split": (5, 1),
        "tie": (4, 3),
    }.items():
        rated_pair(insert, name, {"j1": scores})
    ids = pair_ids(storage, config)
    give_verdicts(insert, ids["agree"], {"alice": "chosen", "bob": "chosen"})
    give_verdicts(insert, ids["flip"], {"alice": "rejected", "bob": "rejected"})
    give_verdicts(insert, ids["bad"], {"alice": "both_bad", "bob": "both_bad", "carol": "chosen"})
    give_verdicts(insert, ids["split"], {"alice": "chosen", "bob": "rejected"})
    give_verdicts(insert, ids["tie"], {"alice": "tie"})
    give_verdicts(insert, "gone", {"alice": "chosen"})
    # Another batch's verdicts on the same pair never count here.
    give_verdicts(insert, ids["agree"], {"alice": "rejected", "dave": "rejected"}, OTHER)
    return ids


# --- corrections in candidate_pairs ----------------------------------------------------------


def test_verdicts_flip_drop_or_keep_a_pair(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    ids = reviewed_batch(insert_rows, storage, config)
    final = build_models(storage, config, BATCH)
    pairs = candidate_pairs(storage)
    review = {name: (row["human_review"], row["dropped_because"]) for name, row in pairs.items()}
    assert review == {
        "agree": ("kept: 2 of 2 verdicts prefer the chosen text", None),
        "flip": ("flipped: 2 of 2 verdicts prefer the rejected text", None),
        "bad": (
            "dropped: 2 of 3 verdicts call both texts bad",
            "human: both_bad (2 of 3 verdicts)",
        ),
        "split": ("kept: no majority (1 chosen, 1 rejected)", None),
        "tie": ("kept: 1 of 1 verdicts call the texts equal", None),
    }
    flipped = pairs["flip"]
    assert (flipped["chosen_completion_id"], flipped["rejected_completion_id"]) == (
        "flip-r",
        "flip-c",
    )
    assert (flipped["chosen_rating"], flipped["rejected_rating"], flipped["margin"]) == (
        2.0,
        4.0,
        -2.0,
    )
    assert flipped["judge_agreement"] == 0.0  # the one judge rated the new chosen lower
    assert (flipped["chosen_model"], flipped["rejected_model"]) == (
        "model-of-flip-r",
        "model-of-flip-c",
    )
    # Nothing else changes: the other pairs keep their sides, the flipped pair its id.
    assert pairs["agree"]["chosen_completion_id"] == "agree-c"
    assert sorted(final["instruction_id"].to_list()) == ["agree", "flip", "split", "tie"]
    [exported_id] = final.filter(pl.col("instruction_id") == "flip")["pair_id"]
    assert flipped["pair_id"] == exported_id == ids["flip"]
    # The pair-integrity gate accepts a pair people flipped.
    assert storage.query(*GATES["pair_integrity"].render(BATCH, sql_vars(config))).height == 0


def test_disagreement_drops_the_pair_under_drop(
    storage: Storage, insert_rows: Insert, make_config: MakeConfig
) -> None:
    config = make_config(review={"on_disagreement": "drop"})
    reviewed_batch(insert_rows, storage, config)
    final = build_models(storage, config, BATCH)
    flip = candidate_pairs(storage)["flip"]
    assert flip["human_review"] == "dropped: 2 of 2 verdicts prefer the rejected text"
    assert flip["dropped_because"] == (
        "human: rejected preferred (2 of 2 verdicts; review.on_disagreement = drop)"
    )
    assert flip["chosen_completion_id"] == "flip-c"
    assert sorted(final["instruction_id"].to_list()) == ["agree", "split", "tie"]


def test_a_flip_to_a_text_that_may_not_be_chosen_drops_the_pair(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    rated_pair(insert_rows, "cut", {"j1": (5, 2)}, rejected_finish="length")
    ids = pair_ids(storage, config)
    give_verdicts(insert_rows, ids["cut"], {"alice": "rejected"})
    assert build_models(storage, config, BATCH).height == 0
    assert candidate_pairs(storage)["cut"]["dropped_because"] == (
        "human: rejected preferred (1 of 1 verdicts; the rejected text may not be chosen: "
        "cut_at_max_tokens)"
    )


def test_pairs_without_verdicts_are_unchanged(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    rated_pair(insert_rows, "plain", {"j1": (5, 2)})
    [row] = build_models(storage, config, BATCH).to_dicts()
    assert row["human_review"] is None and row["chosen_completion_id"] == "plain-c"
    assert storage.query("SELECT * FROM human_agreement").height == 0


# --- human_agreement -------------------------------------------------------------------------


def test_agreement_figures_on_known_verdicts(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    reviewed_batch(insert_rows, storage, config)
    rows = agreement(storage, config)
    assert set(rows) == {"pairs", "j1"}
    pairs = rows["pairs"]
    # Scored: agree 2, flip 2 against, bad 1 (carol; both_bad is not scored), split 1 and 1,
    # tie 1 at half credit: (4 + 0.5) / 8.
    counts = ("verdicts", "agree", "disagree", "ties", "both_bad", "unmatched_verdicts")
    assert [pairs[name] for name in counts] == [8, 4, 3, 1, 2, 1]
    assert pairs["agreement"] == pytest.approx(4.5 / 8)
    low, high = wilson_interval(4.5, 8)
    assert (pairs["agreement_ci_low"], pairs["agreement_ci_high"]) == (
        pytest.approx(low),
        pytest.approx(high),
    )
    # Pairs of verdicts on one pair: agree 1 (same), flip 1 (same), bad 3 (1 same),
    # split 1 (differ): 3 of 6.
    assert (pairs["annotator_pairs"], pairs["annotator_agreement"]) == (6, pytest.approx(0.5))
    # |margin| under 1: none; 1 to 2: bad (carol, 1) and tie (0.5); 2 and up: agree, flip,
    # split (3 of 6).
    buckets = [
        (pairs[f"verdicts_margin_{bucket}"], pairs[f"agreement_margin_{bucket}"])
        for bucket in ("under_1", "1_to_2", "2_up")
    ]
    assert buckets == [(0, None), (2, pytest.approx(0.75)), (6, pytest.approx(0.5))]
    # One judge makes the pairs: its own row says the same.
    assert {k: v for k, v in rows["j1"].items() if k != "judge"} == {
        k: v for k, v in pairs.items() if k != "judge"
    }


def test_each_judge_is_scored_by_its_own_ratings(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    # Panel scores 10/3 against 8/3: the pair is made (and dropped: margin 0.67 < 1).
    rated_pair(insert_rows, "p", {"j1": (5, 1), "j2": (2, 4), "j3": (3, 3)})
    give_verdicts(insert_rows, pair_ids(storage, config)["p"], {"alice": "rejected"})
    insert_rows(
        "judge_calibration",
        [
            {
                "batch_id": BATCH,
                "judge": judge,
                "mode": "listwise",
                "sets_labels": judge == "panel",
                "canaries": 10,
                "canaries_correct": correct,
                "canaries_tied": 0,
                "canaries_wrong": 10 - correct,
                "canaries_unscored": 0,
                "canary_accuracy": correct / 10,
                "position_items": 0,
            }
            for judge, correct in (("j1", 9), ("j2", 6), ("j3", 5), ("panel", 8))
        ],
    )
    rows = agreement(storage, config)
    figures = {
        judge: (row["agree"], row["disagree"], row["ties"], row["canary_accuracy"])
        for judge, row in rows.items()
    }
    assert figures == {
        "pairs": (0, 1, 0, 0.8),
        "j1": (0, 1, 0, 0.9),
        "j2": (1, 0, 0, 0.6),
        "j3": (0, 0, 1, 0.5),  # rated both texts the same: half credit
    }
    # The judge's own score difference picks the bucket: j1 4, j2 2, j3 0, the pair 2/3.
    assert rows["j1"]["verdicts_margin_2_up"] == rows["j2"]["verdicts_margin_2_up"] == 1
    assert rows["j3"]["verdicts_margin_under_1"] == rows["pairs"]["verdicts_margin_under_1"] == 1
    # The pair was flipped (and stays dropped for its margin); agreement reads it as sent.
    assert candidate_pairs(storage)["p"]["human_review"].startswith("flipped")
    assert candidate_pairs(storage)["p"]["dropped_because"].startswith("low_margin")


def test_column_lineage_of_the_agreement(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    reviewed_batch(insert_rows, storage, config)
    agreement(storage, config)
    model = load_project().models["human_agreement"]
    lineage = column_lineage(model, storage.column_types())
    assert ("human_verdicts", "choice") in lineage["agreement"]
    assert lineage["canary_accuracy"] == [("judge_calibration", "canary_accuracy")]


# --- the judge_human_agreement gate ----------------------------------------------------------


def disagreeing_batch(insert: Insert, storage: Storage, config: PipelineConfig) -> None:
    """Ten pairs, each marked the other way round by two people: 20 verdicts, agreement 0."""
    for n in range(10):
        rated_pair(insert, f"p{n}", {"j1": (5, 2)})
    for pair_id in pair_ids(storage, config).values():
        give_verdicts(insert, pair_id, {"alice": "rejected", "bob": "rejected"})


def run_gate(storage: Storage, config: PipelineConfig) -> pl.DataFrame:
    build_models(storage, config, BATCH, "human_agreement")
    return storage.query(*GATES["judge_human_agreement"].render(BATCH, sql_vars(config)))


def test_the_gate_fires_when_people_disagree(
    storage: Storage, insert_rows: Insert, make_config: MakeConfig
) -> None:
    config = make_config(review={"min_verdicts": 20, "min_agreement": 0.6})
    disagreeing_batch(insert_rows, storage, config)
    [row] = run_gate(storage, config).to_dicts()
    high = wilson_interval(0, 20)[1]  # type: ignore[index]
    assert row["reason"] == (
        f"people disagree with the pairs as made: agreement 0.00 (95% CI 0.00-{high:.2f}, "
        "20 verdicts: 0 agree, 0 tied, 20 disagree) lies below review.min_agreement 0.6"
    )
    check = GATES["judge_human_agreement"]
    assert (check.asset, check.severity, check.blocking) == ("dpo_pairs", "ERROR", True)


def test_the_gate_is_off_below_min_verdicts_and_when_people_agree(
    storage: Storage, insert_rows: Insert, make_config: MakeConfig
) -> None:
    config = make_config(review={"min_verdicts": 21})
    disagreeing_batch(insert_rows, storage, config)
    assert run_gate(storage, config).height == 0
    # The bound is the setting: the interval (0.00-0.16) lies below 0.6, not below 0.1.
    assert run_gate(storage, make_config(review={"min_verdicts": 20})).height == 1
    looser = make_config(review={"min_verdicts": 20, "min_agreement": 0.1})
    assert run_gate(storage, looser).height == 0
    with storage.connect() as con:
        con.execute("UPDATE human_verdicts SET choice = 'chosen'")
    assert run_gate(storage, make_config(review={"min_verdicts": 20})).height == 0


# --- the export ----------------------------------------------------------------------------


def test_the_export_carries_what_people_did(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    reviewed_batch(insert_rows, storage, config)
    build_models(storage, config, BATCH)
    pairs, summary = collect_pairs(storage, [])
    records = {r["instruction_id"]: r for r in to_trl_records(pairs)}
    flipped = records["flip"]
    assert flipped["human_review"] == "flipped: 2 of 2 verdicts prefer the rejected text"
    assert flipped["chosen"][0]["content"] == "flip rambles"
    assert (flipped["score_chosen"], flipped["score_rejected"]) == (2.0, 4.0)
    assert records["agree"]["human_review"] == "kept: 2 of 2 verdicts prefer the chosen text"
    assert "bad" not in records
    assert summary["pairs_dropped"] == 1
    # The card's figures come with the pairs.
    assert [row["judge"] for row in summary["human_agreement"]] == ["j1", "pairs"]
