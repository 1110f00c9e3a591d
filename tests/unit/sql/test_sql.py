"""The SQL layer and the real files in dbt_like_sql/, run on crafted rows in a tmp DuckDB."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.sql.project import (
    SQL_ROOT,
    SqlCheck,
    SqlFileError,
    column_lineage,
    load_project,
)
from prefgen_dagster.sql.vars import sql_vars
from prefgen_dagster.storage.store import Storage
from tests.unit.rows import build_models, completion_row, evolved_row, pair_row, rating_row

BATCH = "b1.jsonl"
OTHER = "b2.jsonl"

Insert = Callable[[str, list[dict[str, Any]]], None]

CHECKS = {check.name: check for check in load_project().checks}
CANDIDATE_PAIRS = load_project().models["candidate_pairs"]


# --- crafting rows ---------------------------------------------------------------------------


def completion(cid: str, iid: str, text: str | None = None, batch: str = BATCH) -> dict:
    return completion_row(cid, iid, batch, text=text or f"some answer, {cid}")


def evolved(cid: str, iid: str, text: str | None = None, batch: str = BATCH) -> dict:
    return evolved_row(cid, iid, batch, text=text or f"better answer, {cid}")


def rating(
    cid: str,
    iid: str,
    value: int | None,
    status: str | None = None,
    judge_order: int = 0,
    batch: str = BATCH,
) -> dict:
    status = status or ("ok" if value is not None else "unparseable")
    return rating_row(cid, iid, value, batch, order=judge_order, parse_status=status)


def pair(
    pid: str,
    iid: str,
    chosen: str,
    rejected: str,
    chosen_rating: float | None = 5.0,
    rejected_rating: float | None = 2.0,
    batch: str = BATCH,
) -> dict:
    return pair_row(pid, iid, chosen, rejected, chosen_rating, rejected_rating, batch)


def rated(insert: Insert, iid: str, scores: dict[str, int | None], batch: str = BATCH) -> None:
    """Pooled completions of one instruction, each with one rating (None = parse failure)."""
    insert("completions", [completion(cid, iid, batch=batch) for cid in scores])
    insert("ratings", [rating(cid, iid, value, batch=batch) for cid, value in scores.items()])


def run_pairs(storage: Storage, config: PipelineConfig, batch: str = BATCH) -> pl.DataFrame:
    return build_models(storage, config, batch).sort("instruction_id")


def pair_summary(frame: pl.DataFrame) -> list[tuple]:
    return list(
        frame.select(
            "instruction_id", "chosen_completion_id", "rejected_completion_id", "margin"
        ).iter_rows()
    )


def offending(storage: Storage, config: PipelineConfig, name: str) -> pl.DataFrame:
    build_models(storage, config, BATCH, "candidates")
    return storage.query(*CHECKS[name].render(BATCH, sql_vars(config)))


# --- loading the files ---------------------------------------------------------------------


def test_real_files_load() -> None:
    models = load_project().models
    assert list(models) == [
        "candidate_pairs",
        "candidates",
        "dpo_pairs",
        "human_agreement",
        "judge_scores",
    ]
    assert set(models["candidates"].refs) == {"completions", "evolved_completions"}
    assert set(models["judge_scores"].refs) == {"ratings"}
    assert set(models["candidate_pairs"].refs) == {"candidates", "judge_scores", "human_verdicts"}
    # A ref in a comment (`-- depends_on:`) orders the models and selects nothing.
    assert set(models["dpo_pairs"].refs) == {"candidate_pairs", "human_agreement"}
    assert set(models["human_agreement"].refs) == {
        "candidate_pairs",
        "human_verdicts",
        "judge_calibration",
        "judge_scores",
    }
    assert set(models["candidate_pairs"].variables) == {
        "judge_decides",
        "min_margin",
        "model_ranking",
        "near_duplicate_cosine",
        "near_duplicate_similarity",
        "on_disagreement",
        "pairing_seed",
        "strategy",
    }
    summary = {c.name: (c.asset, c.severity, c.blocking) for c in CHECKS.values()}
    assert summary == {
        "input_reconciliation": ("instructions", "ERROR", True),
        "judge_canary_accuracy": ("dpo_pairs", "ERROR", True),
        "judge_human_agreement": ("dpo_pairs", "ERROR", True),
        "judge_parse_failures": ("ratings", "ERROR", True),
        "judge_position_bias": ("dpo_pairs", "ERROR", True),
        "length_bias": ("dpo_pairs", "WARN", False),
        "length_outliers": ("dpo_pairs", "WARN", False),
        "llm_request_reconciliation": ("ratings", "ERROR", True),
        "pair_integrity": ("dpo_pairs", "ERROR", True),
        "rating_outliers": ("ratings", "WARN", False),
        "unchoosable_chosen": ("dpo_pairs", "ERROR", True),
    }
    assert all(c.description for c in CHECKS.values())


def test_values_are_bound_not_pasted(config: PipelineConfig) -> None:
    values = {**sql_vars(config), "min_margin": 1.75}
    sql, params = CANDIDATE_PAIRS.render("b'1", values)
    assert params["min_margin"] == 1.75 and params["batch_id"] == "b'1"
    assert "$min_margin" in sql and "$batch_id" in sql
    assert "1.75" not in sql and "b'1" not in sql
    with pytest.raises(SqlFileError, match="candidate_pairs.sql: no value for var"):
        CANDIDATE_PAIRS.render(BATCH, {})


HEADER = {
    "asset": "dpo_pairs",
    "severity": "WARN",
    "blocking": "false",
    "filter": "false",
    "description": "a test check",
}
GOOD_SQL = "SELECT pair_id FROM {{ ref('dpo_pairs') }} WHERE margin < 1"


def write_check(root: Path, header: dict[str, str], sql: str = GOOD_SQL) -> Path:
    """A check file in a copy of the project's SQL folder (its models give the refs)."""
    if not (root / "models").exists():
        shutil.copytree(SQL_ROOT / "models", root / "models")
    folder = root / "checks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "my_check.sql"
    lines = [f"-- {key}: {value}" for key, value in header.items()]
    path.write_text("\n".join([*lines, sql]) + "\n", encoding="utf-8")
    return path


def test_a_well_formed_tmp_check_loads(tmp_path: Path) -> None:
    write_check(tmp_path, HEADER)
    (check,) = load_project(tmp_path).checks
    assert isinstance(check, SqlCheck)
    assert (check.name, check.severity, check.blocking, check.refs) == (
        "my_check",
        "WARN",
        False,
        ("dpo_pairs",),
    )


@pytest.mark.parametrize(
    ("header", "sql", "message"),
    [
        (HEADER, "SELECT pair_id FROM {{ ref('dpo_pairs') }} WHERE (", "SQL syntax error"),
        (HEADER, "SELECT * FROM {{ ref('pairs') }}", "unknown ref(s) ['pairs']"),
        (HEADER, "SELECT 1; SELECT 2", "exactly one SELECT"),
        ({k: v for k, v in HEADER.items() if k != "description"}, GOOD_SQL, "['description']"),
        ({**HEADER, "severity": "FATAL"}, GOOD_SQL, "severity must be WARN or ERROR"),
        ({**HEADER, "blocking": "yes"}, GOOD_SQL, "blocking must be true or false"),
        ({**HEADER, "asset": "nowhere"}, GOOD_SQL, "unknown asset 'nowhere'"),
    ],
    ids=["syntax", "unknown-ref", "two-statements", "missing-header", "severity", "flag", "asset"],
)
def test_malformed_check_names_the_file(
    tmp_path: Path, header: dict[str, str], sql: str, message: str
) -> None:
    path = write_check(tmp_path, header, sql)
    with pytest.raises(SqlFileError) as error:
        load_project(tmp_path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_a_new_model_file_is_a_model_and_may_be_reffed(tmp_path: Path) -> None:
    write_check(tmp_path, {**HEADER, "asset": "top_pairs"}, "SELECT * FROM {{ ref('top_pairs') }}")
    path = tmp_path / "models" / "top_pairs.sql"
    path.write_text("SELECT * FROM {{ ref('dpo_pairs') }} WHERE margin >= 2\n", encoding="utf-8")
    project = load_project(tmp_path)
    assert set(project.models) == {
        "candidate_pairs",
        "candidates",
        "dpo_pairs",
        "human_agreement",
        "judge_scores",
        "top_pairs",
    }
    assert [c.asset for c in project.checks] == ["top_pairs"]


def test_a_model_may_not_replace_a_source_table(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    path = tmp_path / "models" / "ratings.sql"
    path.write_text("SELECT * FROM {{ ref('completions') }}\n", encoding="utf-8")
    with pytest.raises(SqlFileError, match="must be a new table name") as error:
        load_project(tmp_path)
    assert str(path) in str(error.value)


def test_column_lineage_of_the_pair_rule(storage: Storage, config: PipelineConfig) -> None:
    build_models(storage, config, BATCH, "candidates", "judge_scores")
    lineage = column_lineage(CANDIDATE_PAIRS, storage.column_types())
    # A side comes from the ratings or the texts, and whether people's verdicts flipped the
    # pair (which needs a rejected text that may be chosen).
    flip = [("candidates", "can_be_chosen"), ("human_verdicts", "choice")]
    flip.append(("human_verdicts", "pair_id"))
    scores = [("judge_scores", "aspects"), ("judge_scores", "score")]
    assert lineage["chosen_rating"] == [*flip, *scores]
    assert lineage["instruction_id"] == [("candidates", "instruction_id")]
    assert lineage["chosen_model"] == sorted([*flip, ("candidates", "model")])
    assert lineage["human_review"] == flip


# --- the dpo_pairs model -------------------------------------------------------------------


def test_best_vs_worst(storage: Storage, insert_rows: Insert, config: PipelineConfig) -> None:
    rated(insert_rows, "i1", {"c1": 3, "c2": 5, "c3": 1})
    insert_rows("evolved_completions", [evolved("e1", "i1")])
    insert_rows("ratings", [rating("e1", "i1", 4)])
    frame = run_pairs(storage, config)
    assert pair_summary(frame) == [("i1", "c2", "c3", 4.0)]
    row = frame.row(0, named=True)
    assert (row["chosen_rating"], row["rejected_rating"]) == (5.0, 1.0)
    assert (row["chosen_origin"], row["rejected_origin"]) == ("pooled", "pooled")
    assert (row["chosen_model"], row["rejected_model"]) == ("model-of-c2", "model-of-c3")
    assert row["strategy"] == "best_vs_worst"
    expected_id = hashlib.sha256(b"c2:c3:best_vs_worst").hexdigest()[:20]
    assert row["pair_id"] == expected_id


def test_evolved_completion_can_be_chosen(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    rated(insert_rows, "i1", {"c1": 2, "c2": 3})
    insert_rows("evolved_completions", [evolved("e1", "i1")])
    insert_rows("ratings", [rating("e1", "i1", 5)])
    row = run_pairs(storage, config).row(0, named=True)
    assert (row["chosen_completion_id"], row["chosen_origin"]) == ("e1", "evolved")
    assert (row["rejected_completion_id"], row["rejected_origin"]) == ("c1", "pooled")


def test_ties_are_never_paired(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    rated(insert_rows, "all-equal", {"a1": 4, "a2": 4, "a3": 4})
    rated(insert_rows, "top-tie", {"t2": 5, "t1": 5, "t3": 2})
    assert pair_summary(run_pairs(storage, config)) == [("top-tie", "t1", "t3", 3.0)]


def test_null_ratings_are_ignored(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    rated(insert_rows, "i1", {"c1": None, "c2": 4, "c3": 2})
    rated(insert_rows, "i2", {"d1": None, "d2": 3})  # only one usable rating
    rated(insert_rows, "i3", {"e1": None, "e2": None})
    assert pair_summary(run_pairs(storage, config)) == [("i1", "c2", "c3", 2.0)]


def test_a_single_completion_gives_no_pair(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    rated(insert_rows, "i1", {"only": 5})
    assert run_pairs(storage, config).height == 0


def test_margin_is_chosen_minus_rejected_over_mean_scores(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    rated(insert_rows, "i1", {"c1": 5, "c2": 2})
    insert_rows(
        "ratings", [rating("c1", "i1", 4, judge_order=1), rating("c2", "i1", 1, judge_order=1)]
    )
    row = run_pairs(storage, config).row(0, named=True)
    assert (row["chosen_rating"], row["rejected_rating"], row["margin"]) == (4.5, 1.5, 3.0)
    assert row["margin"] == row["chosen_rating"] - row["rejected_rating"]


def test_other_batches_never_leak_in(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    rated(insert_rows, "i1", {"c1": 4, "c2": 3})
    rated(insert_rows, "i1", {"x1": 5, "x2": 1}, batch=OTHER)
    # A rating of this batch's completion recorded under the other batch does not count.
    insert_rows("ratings", [rating("c2", "i1", 1, judge_order=1, batch=OTHER)])
    assert pair_summary(run_pairs(storage, config)) == [("i1", "c1", "c2", 1.0)]
    assert pair_summary(run_pairs(storage, config, OTHER)) == [("i1", "x1", "x2", 4.0)]
    assert run_pairs(storage, config, "x' OR 1=1 --").height == 0


# --- the checks ----------------------------------------------------------------------------


def test_low_margin_pairs_are_dropped_with_their_reason(
    storage: Storage, insert_rows: Insert, make_config: Callable[..., PipelineConfig]
) -> None:
    config = make_config(pairing={"min_margin": 2.0})
    rated(insert_rows, "i1", {"c1": 5, "c2": 3})  # margin 2.0: not below min_margin 2.0
    rated(insert_rows, "i2", {"d1": 4, "d2": 3})
    final = run_pairs(storage, config)
    assert final["instruction_id"].to_list() == ["i1"]
    dropped = storage.query(
        "SELECT instruction_id, dropped_because FROM candidate_pairs "
        "WHERE dropped_because IS NOT NULL"
    )
    assert dropped.to_dicts() == [
        {"instruction_id": "i2", "dropped_because": "low_margin: 1.00 < pairing.min_margin 2.0"}
    ]


def length_outlier_batch(insert: Insert) -> None:
    lengths = {"n0": 20, "n1": 21, "n2": 22, "n3": 23, "n4": 24}
    insert("completions", [completion(c, "i1", "x" * n) for c, n in lengths.items()])
    insert("evolved_completions", [evolved("long", "i1", "y" * 500)])
    insert("dpo_pairs", [pair("ok", "i1", "n1", "n4")])


def test_length_outliers_pass(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    length_outlier_batch(insert_rows)
    assert offending(storage, config, "length_outliers").height == 0


def test_length_outliers_fail(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    length_outlier_batch(insert_rows)
    insert_rows("dpo_pairs", [pair("bad", "i1", "long", "n0")])
    rows = offending(storage, config, "length_outliers")
    assert list(rows.select("pair_id", "outlier_completion_id", "chars").iter_rows()) == [
        ("bad", "long", 500)
    ]


def parse_status_batch(insert: Insert, failures: int, total: int = 10) -> None:
    rows = [rating(f"c{i}", "i1", 3) for i in range(total - failures)]
    rows += [rating(f"f{i}", "i1", None, status="invalid_json") for i in range(failures)]
    insert("ratings", rows)
    # Failures in another batch never count towards this one.
    insert("ratings", [rating(f"o{i}", "i1", None, "empty", batch=OTHER) for i in range(5)])


def test_judge_parse_failures_pass_at_the_threshold(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    parse_status_batch(insert_rows, failures=2)  # 20% is not above max_parse_failure_rate 0.2
    assert offending(storage, config, "judge_parse_failures").height == 0


def test_judge_parse_failures_fail(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    parse_status_batch(insert_rows, failures=3)
    rows = offending(storage, config, "judge_parse_failures")
    assert rows["completion_id"].to_list() == ["f0", "f1", "f2"]
    assert rows["failure_rate"].to_list() == pytest.approx([0.3, 0.3, 0.3])
    # The reason names the rate, the bound and the setting that moves it, like the canary
    # and position gates (the batch of OTHER's failures do not count).
    assert rows["reason"][0] == (
        "3 of 10 answered ratings could not be parsed (30.0%, above "
        "checks.max_parse_failure_rate 0.2); first: judge judge, completion f0: invalid_json"
    )


def integrity_batch(insert: Insert) -> None:
    insert("completions", [completion("a1", "i1"), completion("a2", "i1")])
    insert("completions", [completion("b1", "i2"), completion("b2", "i2")])
    insert("dpo_pairs", [pair("good", "i1", "a1", "a2"), pair("good2", "i2", "b1", "b2", 4, 1)])


def test_pair_integrity_pass(storage: Storage, insert_rows: Insert, config: PipelineConfig) -> None:
    integrity_batch(insert_rows)
    assert offending(storage, config, "pair_integrity").height == 0


def test_pair_integrity_fail(storage: Storage, insert_rows: Insert, config: PipelineConfig) -> None:
    integrity_batch(insert_rows)
    insert_rows(
        "dpo_pairs",
        [
            pair("tie", "i1", "a1", "a2", 3, 3),
            pair("reversed", "i1", "a2", "a1", 2, 4),
            pair("cross", "i1", "a1", "b2"),  # rejected answers another instruction
            pair("missing", "i2", "gone", "b2"),  # chosen completion does not exist
        ],
    )
    rows = offending(storage, config, "pair_integrity")
    assert sorted(rows["pair_id"].to_list()) == ["cross", "missing", "reversed", "tie"]


def test_pair_integrity_flags_null_ratings(
    storage: Storage, insert_rows: Insert, config: PipelineConfig
) -> None:
    integrity_batch(insert_rows)
    insert_rows("dpo_pairs", [pair("unrated", "i1", "a1", "a2", None, 2)])
    assert offending(storage, config, "pair_integrity")["pair_id"].to_list() == ["unrated"]
