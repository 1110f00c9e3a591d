"""The export: which batches and pairs go out, and TRL's conversational record shape."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from datasets import load_from_disk

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.export.card import dataset_card
from prefgen_dagster.export.dataset import (
    OTHER_JUDGE,
    collect_pairs,
    held_back_pairs,
    input_columns,
    split_of,
    to_trl_records,
    write_dataset,
)
from prefgen_dagster.sql.project import SqlCheck, load_project
from prefgen_dagster.storage.store import Storage
from tests.unit.rows import build_models, completion_row, instruction_row, rating_row
from tests.unit.rows import pair_row as dpo_pair_row

Insert = Callable[[str, list[dict[str, Any]]], None]

CHECKS = load_project().checks
BLOCKING = [check.name for check in CHECKS if check.blocking]


def pair_row(**overrides: Any) -> dict[str, Any]:
    row = {
        "batch_id": "b1",
        "pair_id": "p1",
        "instruction_id": "i1",
        "instruction": "Explain tides.",
        "system_prompt": "Be brief.",
        "source": "b1.jsonl",
        "source_row": 3,
        "chosen_completion_id": "c1",
        "rejected_completion_id": "c2",
        "chosen_text": "The moon pulls the sea.",
        "rejected_text": "Tides are cheese.",
        "chosen_rating": 5.0,
        "rejected_rating": 2.0,
        "margin": 3.0,
        "margin_normalized": 0.75,
        "chosen_model": "gen-a",  # the config's name, not the path
        "rejected_model": "models/b",  # not in the config: as stored
        "chosen_origin": "evolved",
        "rejected_origin": "pooled",
        "chosen_generation_system_prompt": "You are terse.",
        "rejected_generation_system_prompt": None,
        "judges": ["models/j"],
        "judge_modes": ["listwise"],
        "judge_agreement": 1.0,
        "human_review": "kept: 2 of 2 verdicts prefer the chosen text",
        "strategy": "judge",
        "settings_hash": "s1",
        "input_fields": '{"category": "science", "id": 7}',
    }
    return {**row, **overrides}


def test_trl_record_shape() -> None:
    frame = pl.DataFrame(
        [
            pair_row(),
            pair_row(pair_id="p2", system_prompt=None, rejected_text=None, input_fields=None),
        ]
    )
    with_system, without_system = to_trl_records(frame, {"models/a": "gen-a", "models/j": "j"})
    assert with_system == {
        "prompt": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Explain tides."},
        ],
        "chosen": [{"role": "assistant", "content": "The moon pulls the sea."}],
        "rejected": [{"role": "assistant", "content": "Tides are cheese."}],
        "score_chosen": 5.0,
        "score_rejected": 2.0,
        "margin": 3.0,
        "margin_normalized": 0.75,
        "split": "train",
        "chosen_model": "gen-a",  # the config's name, not the path
        "rejected_model": "models/b",  # not in the config: as stored
        "chosen_origin": "evolved",
        "rejected_origin": "pooled",
        "chosen_generation_system_prompt": "You are terse.",
        "rejected_generation_system_prompt": None,
        "judges": ["j"],
        "judge_mode": "listwise",
        "judge_agreement": 1.0,
        "human_review": "kept: 2 of 2 verdicts prefer the chosen text",
        "strategy": "judge",
        "settings_hash": "s1",
        "pair_id": "p1",
        "instruction_id": "i1",
        "chosen_completion_id": "c1",
        "rejected_completion_id": "c2",
        "batch_id": "b1",
        "source": "b1.jsonl",
        "source_row": 3,
        "input_category": "science",
        "input_id": 7,
    }
    assert without_system["prompt"] == [{"role": "user", "content": "Explain tides."}]
    assert without_system["rejected"] == [{"role": "assistant", "content": ""}]
    assert (without_system["input_category"], without_system["input_id"]) == (None, None)


def test_input_fields_become_one_typed_column_each() -> None:
    columns = input_columns(
        ['{"id": 1, "tags": ["a"], "score": 2}', None, '{"id": 2, "score": 2.5, "tags": "b"}']
    )
    assert columns == {
        "input_id": [1, None, 2],
        "input_score": [2.0, None, 2.5],  # ints and floats: floats
        "input_tags": ['["a"]', None, '"b"'],  # a list, or mixed kinds: JSON text
    }
    assert input_columns([None, None]) == {}


def test_the_split_is_by_instruction_and_stable() -> None:
    ids = [f"instruction-{n}" for n in range(2000)]
    splits = [split_of(i, 0.1) for i in ids]
    assert 150 < splits.count("test") < 250
    assert splits == [split_of(i, 0.1) for i in ids]  # the same every time
    assert {split_of(i, 0.0) for i in ids} == {"train"}
    # Every pair of one instruction lands in the same split.
    frame = pl.DataFrame([pair_row(pair_id=f"p{n}", instruction_id="i9") for n in range(5)])
    assert len({r["split"] for r in to_trl_records(frame, test_fraction=0.5)}) == 1


# --- collect_pairs on crafted rows ---------------------------------------------------------


def add_batch(
    storage: Storage,
    config: PipelineConfig,
    insert: Insert,
    batch: str,
    pairs: list[tuple[str, float]],
) -> None:
    """One instruction per pair, two pooled completions each, the `candidates` rows, and the
    pair rows as the pair models write them: `candidate_pairs` holds every pair, a pair
    below min_margin (1.0) is dropped there with its reason, `dpo_pairs` holds the rest.

    `pairs` is [(pair_id, margin)]: chosen rated 5, rejected 5 - margin.
    """
    instructions, completions, pair_rows = [], [], []
    for pid, margin in pairs:
        iid, chosen, rejected = f"{pid}-i", f"{pid}-c", f"{pid}-r"
        instructions.append(instruction_row(iid, batch, text=f"question {pid}"))
        completions += [completion_row(cid, iid, batch, model="m") for cid in (chosen, rejected)]
        pair_rows.append(
            dpo_pair_row(
                pid,
                iid,
                chosen,
                rejected,
                5.0,
                5.0 - margin,
                batch,
                chosen_model="m",
                rejected_model="m",
                chosen_origin="pooled",
                rejected_origin="pooled",
            )
        )
    insert("instructions", instructions)
    insert("completions", completions)
    build_models(storage, config, batch, "candidates")
    candidate_pairs = pl.DataFrame(pair_rows).with_columns(
        dropped_because=pl.when(pl.col("margin") < 1.0).then(pl.lit("low_margin: test"))
    )
    storage.replace_partition("candidate_pairs", batch, candidate_pairs)
    insert("dpo_pairs", [row for row in pair_rows if row["margin"] >= 1.0])


def check_result(batch: str, check: SqlCheck, passed: bool) -> dict[str, Any]:
    return {
        "batch_id": batch,
        "check_name": check.name,
        "asset": check.asset,
        "severity": check.severity,
        "blocking": check.blocking,
        "passed": passed,
        "failing_rows": 0 if passed else 1,
    }


def checks_run(insert: Insert, batch: str, failing: tuple[str, ...] = ()) -> None:
    """`check_results` rows for every check of the batch, as plain SQL inserts."""
    now = datetime.now()
    rows = [check_result(batch, c, c.name not in failing) | {"evaluated_at": now} for c in CHECKS]
    insert("check_results", rows)


@pytest.fixture
def three_batches(storage: Storage, config: PipelineConfig, insert_rows: Insert) -> Storage:
    add_batch(storage, config, insert_rows, "a.jsonl", [("a1", 3.0), ("a2", 0.5), ("a3", 1.0)])
    add_batch(storage, config, insert_rows, "b.jsonl", [("b1", 4.0)])
    add_batch(storage, config, insert_rows, "c.jsonl", [("c1", 4.0)])
    checks_run(insert_rows, "a.jsonl", failing=("length_outliers",))  # WARN only
    checks_run(insert_rows, "b.jsonl", failing=("pair_integrity",))  # blocking
    # c.jsonl: no check results yet
    return storage


def test_blocking_checks_are_the_expected_ones() -> None:
    assert sorted(BLOCKING) == [
        "input_reconciliation",
        "judge_canary_accuracy",
        "judge_human_agreement",
        "judge_parse_failures",
        "judge_position_bias",
        "llm_request_reconciliation",
        "pair_integrity",
        "unchoosable_chosen",
    ]


def test_collect_pairs_holds_back_and_reads_the_final_pairs(
    three_batches: Storage, config: PipelineConfig
) -> None:
    pairs, summary = collect_pairs(three_batches, BLOCKING)
    assert summary == {
        "batches_exported": ["a.jsonl"],
        "batches_held_back": ["b.jsonl", "c.jsonl"],
        # Each held batch says why: the failed check's own reason, or what has not run.
        "held_back_reasons": {
            "b.jsonl": ["pair_integrity: failed"],
            "c.jsonl": [f"{name}: not run yet" for name in sorted(BLOCKING)],
        },
        "pairs_dropped": 1,  # a2: margin 0.5 < min_margin 1.0, dropped by candidate_pairs
        "input_datasets": {},  # files, not dataset splits
        "human_agreement": [],  # no verdicts
    }
    assert sorted(pairs["pair_id"].to_list()) == ["a1", "a3"]
    records = {r["pair_id"]: r for r in to_trl_records(pairs)}
    assert records["a1"]["chosen"] == [{"role": "assistant", "content": "text of a1-c"}]
    assert records["a1"]["rejected"] == [{"role": "assistant", "content": "text of a1-r"}]
    assert records["a1"]["prompt"] == [{"role": "user", "content": "question a1"}]
    assert records["a1"]["margin"] == 3.0


def test_one_export_never_mixes_judges(
    three_batches: Storage, config: PipelineConfig, insert_rows: Insert
) -> None:
    """a.jsonl passed its checks, but its labels came from judge settings `old`: with the
    current settings `new` it is held back, with a reason; with `old` it goes out."""
    insert_rows(
        "ratings",
        [
            rating_row(cid, "a1-i", value, "a.jsonl", judge="models/j", judge_settings="old")
            for cid, value in (("a1-c", 5), ("a1-r", 2))
        ],
    )
    _, summary = collect_pairs(three_batches, BLOCKING, judge_settings="new")
    assert "a.jsonl" not in summary["batches_exported"]
    assert summary["held_back_reasons"]["a.jsonl"] == [
        f"{OTHER_JUDGE} (re-run its ratings to export it)"
    ]
    pairs, summary = collect_pairs(three_batches, BLOCKING, judge_settings="old")
    assert summary["batches_exported"] == ["a.jsonl"]
    [record] = [r for r in to_trl_records(pairs, {"models/j": "judge-j"}) if r["pair_id"] == "a1"]
    assert (record["judges"], record["judge_mode"]) == (["judge-j"], "listwise")


def test_batch_goes_out_once_its_blocking_checks_pass(
    three_batches: Storage, config: PipelineConfig
) -> None:
    # The real writer replaces b's failed result; c gets results for the first time.
    for batch in ("b.jsonl", "c.jsonl"):
        for check in CHECKS:
            if check.blocking:
                three_batches.record_check(check_result(batch, check, passed=True))
    pairs, summary = collect_pairs(three_batches, BLOCKING)
    assert summary["batches_exported"] == ["a.jsonl", "b.jsonl", "c.jsonl"]
    assert summary["batches_held_back"] == []
    assert sorted(pairs["pair_id"].to_list()) == ["a1", "a3", "b1", "c1"]


def test_nothing_to_export(storage: Storage, config: PipelineConfig) -> None:
    pairs, summary = collect_pairs(storage, BLOCKING)
    assert pairs.height == 0
    assert summary == {
        "batches_exported": [],
        "batches_held_back": [],
        "held_back_reasons": {},
        "pairs_dropped": 0,
        "input_datasets": {},
        "human_agreement": [],
    }
    assert to_trl_records(pairs) == []


def test_held_back_batches_keep_their_pairs_and_reasons_apart(
    three_batches: Storage, config: PipelineConfig, tmp_path: Path
) -> None:
    # b's blocking check failed with a one-line reason, as a real check run records it.
    [integrity] = [c for c in CHECKS if c.name == "pair_integrity"]
    three_batches.record_check(
        check_result("b.jsonl", integrity, passed=False) | {"reason": "pair b1: chosen not above"}
    )
    pairs, summary = collect_pairs(three_batches, BLOCKING)
    assert summary["held_back_reasons"]["b.jsonl"] == ["pair_integrity: pair b1: chosen not above"]
    held = held_back_pairs(three_batches, summary["held_back_reasons"])
    assert sorted(held["pair_id"]) == ["b1", "c1"]  # never in the dataset itself
    assert set(held["pair_id"]).isdisjoint(pairs["pair_id"])
    why = dict(held.select("pair_id", "held_back_because").iter_rows())
    assert why["b1"] == "pair_integrity: pair b1: chosen not above"
    assert why["c1"].startswith("input_reconciliation: not run yet; ")

    records = to_trl_records(pairs)
    card = dataset_card(records, summary, config, "hash")
    paths = write_dataset(records, tmp_path / "export", card, held)
    assert pl.read_parquet(paths["held_back"]).height == 2
    assert "  * b.jsonl: pair_integrity: pair b1: chosen not above" in card
    assert (tmp_path / "export" / "README.md").read_text() == card
    # Nothing held back: an empty file, still written, so a stale one never lingers.
    write_dataset(records, tmp_path / "export", card, held_back_pairs(three_batches, {}))
    assert pl.read_parquet(paths["held_back"]).height == 0
    # Nothing exported at all: the dataset still loads, with no rows.
    write_dataset([], tmp_path / "export", card, held)
    empty = load_from_disk(paths["dataset_dir"])
    assert {name: len(split) for name, split in empty.items()} == {"train": 0, "test": 0}
