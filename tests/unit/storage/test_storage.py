"""The DuckDB file: schema versions, whole-partition replacement."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import duckdb
import polars as pl
import pytest
from filelock import FileLock

from prefgen_dagster.storage.schema import SCHEMA_VERSION, TABLES
from prefgen_dagster.storage.store import Storage, StorageUnavailable
from tests.unit.rows import instruction_row

# The tables whose columns changed after schema version 1, as version 1 wrote them (`git show
# 170a457~1:prefgen_dagster/storage.py`).
V1_TABLES = """
CREATE TABLE schema_info (version INTEGER NOT NULL);
INSERT INTO schema_info VALUES (1);
CREATE TABLE completions (
    batch_id VARCHAR NOT NULL, completion_id VARCHAR NOT NULL, instruction_id VARCHAR NOT NULL,
    model VARCHAR NOT NULL, backend VARCHAR NOT NULL, system_prompt VARCHAR,
    sampling VARCHAR NOT NULL, sample_index INTEGER NOT NULL, template_version VARCHAR NOT NULL,
    text VARCHAR, finish_reason VARCHAR, prompt_tokens INTEGER, completion_tokens INTEGER,
    call_id VARCHAR NOT NULL, PRIMARY KEY (batch_id, completion_id));
CREATE TABLE evolved_completions (
    batch_id VARCHAR NOT NULL, completion_id VARCHAR NOT NULL, instruction_id VARCHAR NOT NULL,
    parent_completion_id VARCHAR NOT NULL, root_completion_id VARCHAR NOT NULL,
    model VARCHAR NOT NULL, mutation VARCHAR NOT NULL, round INTEGER NOT NULL,
    sampling VARCHAR NOT NULL, template_version VARCHAR NOT NULL,
    text VARCHAR, finish_reason VARCHAR, prompt_tokens INTEGER, completion_tokens INTEGER,
    call_id VARCHAR NOT NULL, PRIMARY KEY (batch_id, completion_id));
CREATE TABLE check_results (
    batch_id VARCHAR NOT NULL, check_name VARCHAR NOT NULL, asset VARCHAR NOT NULL,
    severity VARCHAR NOT NULL, blocking BOOLEAN NOT NULL, passed BOOLEAN NOT NULL,
    failing_rows INTEGER NOT NULL, evaluated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (batch_id, check_name));
CREATE TABLE ratings (
    batch_id VARCHAR NOT NULL, completion_id VARCHAR NOT NULL, instruction_id VARCHAR NOT NULL,
    judge VARCHAR NOT NULL, aspect VARCHAR NOT NULL, judge_order INTEGER NOT NULL,
    position INTEGER NOT NULL, rating INTEGER, rationale VARCHAR, raw_output VARCHAR,
    parse_status VARCHAR NOT NULL, attempts INTEGER NOT NULL, call_id VARCHAR NOT NULL,
    judge_settings VARCHAR NOT NULL,
    PRIMARY KEY (batch_id, completion_id, judge, aspect, judge_order));
CREATE TABLE dpo_pairs (
    batch_id VARCHAR NOT NULL, pair_id VARCHAR NOT NULL, instruction_id VARCHAR NOT NULL,
    chosen_completion_id VARCHAR NOT NULL, rejected_completion_id VARCHAR NOT NULL,
    chosen_model VARCHAR, rejected_model VARCHAR, chosen_origin VARCHAR, rejected_origin VARCHAR,
    chosen_rating DOUBLE, rejected_rating DOUBLE, margin DOUBLE, strategy VARCHAR,
    PRIMARY KEY (batch_id, pair_id));
CREATE TABLE llm_calls (
    call_id VARCHAR PRIMARY KEY, model VARCHAR NOT NULL, request VARCHAR NOT NULL,
    response VARCHAR, finish_reason VARCHAR, prompt_tokens INTEGER, completion_tokens INTEGER,
    latency_s DOUBLE, created_at TIMESTAMP DEFAULT current_timestamp);
INSERT INTO llm_calls (call_id, model, request, response) VALUES ('c1', 'm', '{}', 'paid for');
INSERT INTO ratings VALUES
    ('b', 'x', 'i', 'j', 'overall', 0, 1, 4, 'ok', '{}', 'ok', 1, 'c1', '{}'),
    ('b', 'y', 'i', 'j', 'overall', 0, 2, 2, 'ok', '{}', 'ok', 1, 'c1', '{}');
"""


def schema_version(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT max(version) FROM schema_info").fetchall()[0][0]


def test_a_version_1_file_is_migrated_keeping_its_cache_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "v1.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(V1_TABLES)
    storage = Storage(path)
    assert storage.cached_calls(["c1"])["c1"]["response"] == "paid for"
    assert schema_version(path) == SCHEMA_VERSION
    assert storage.tokens_spent("any run") == 0  # the token budget's run_id column is there
    # The old rating rows have the defaults that describe how version 1 judged: candidates,
    # listwise, and `shown` counts the texts of their request.
    [old, _] = storage.query(
        "SELECT order_name, not_applicable, rating, purpose, mode, shown FROM ratings "
        "ORDER BY position"
    ).to_dicts()
    assert old == {
        "order_name": "original",
        "not_applicable": False,
        "rating": 4,
        "purpose": "label",
        "mode": "listwise",
        "shown": 2,
    }
    # Tables that version 1 did not have exist now, and today's rows can be written.
    assert storage.query("SELECT count(*) AS n FROM failed_calls")["n"][0] == 0
    pair = {"batch_id": "b", "pair_id": "p", "instruction_id": "i", "judge_agreement": 1.0}
    pair |= {"chosen_completion_id": "x", "rejected_completion_id": "y"}
    storage.replace_partition("dpo_pairs", "b", pl.DataFrame([pair]))
    assert storage.query("SELECT judge_agreement FROM dpo_pairs")["judge_agreement"][0] == 1.0


def test_a_sql_models_table_gains_the_columns_its_select_gains(storage: Storage) -> None:
    # A model's table is made from its first rows; the model's SELECT later gains a column
    # (as candidate_pairs gained human_review): the older rows get NULL.
    storage.replace_partition("clear_pairs", "b1", pl.DataFrame({"batch_id": ["b1"], "x": [1]}))
    newer = pl.DataFrame({"batch_id": ["b2"], "x": [2], "human_review": ["kept"]})
    storage.replace_partition("clear_pairs", "b2", newer)
    rows = storage.query("SELECT batch_id, x, human_review FROM clear_pairs ORDER BY batch_id")
    assert rows.rows() == [("b1", 1, None), ("b2", 2, "kept")]


def test_a_migration_that_fails_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "broken-v1.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(V1_TABLES)
        con.execute("DROP TABLE dpo_pairs")  # not a file version 1 could have written
    with pytest.raises(RuntimeError, match=f"{path}: could not bring schema version 1 to"):
        Storage(path).query("SELECT 1")
    assert schema_version(path) == 1
    with duckdb.connect(str(path), read_only=True) as con:
        columns = [row[0] for row in con.execute("DESCRIBE completions").fetchall()]
    assert "pool_member" not in columns


def test_checks_recorded_under_the_old_asset_names_are_the_renamed_assets(tmp_path: Path) -> None:
    # Version 4 named the input and generation assets raw_instructions and pooled_completions.
    path = tmp_path / "v4.duckdb"
    storage = Storage(path)
    outcome = {"batch_id": "b", "severity": "ERROR", "blocking": True, "passed": True}
    outcome |= {"failing_rows": 0}
    storage.record_check({**outcome, "check_name": "one", "asset": "raw_instructions"})
    storage.record_check({**outcome, "check_name": "two", "asset": "pooled_completions"})
    storage.record_check({**outcome, "check_name": "three", "asset": "ratings"})
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE schema_info SET version = 4")
    found = Storage(path).query("SELECT check_name, asset FROM check_results ORDER BY asset")
    assert found.rows() == [("two", "completions"), ("one", "instructions"), ("three", "ratings")]
    assert schema_version(path) == SCHEMA_VERSION


def test_a_file_from_a_newer_prefgen_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE schema_info (version INTEGER NOT NULL)")
        con.execute("INSERT INTO schema_info VALUES (?)", [SCHEMA_VERSION + 1])
    with pytest.raises(RuntimeError, match=f"{path}: schema version {SCHEMA_VERSION + 1} was"):
        Storage(path).query("SELECT 1")
    assert schema_version(path) == SCHEMA_VERSION + 1


def test_replacing_a_partition_keeps_other_batches_and_rolls_back_on_error(
    tmp_path: Path,
) -> None:
    storage = Storage(tmp_path / "db.duckdb")
    row = {"batch_id": "a", "source": "a.jsonl", "source_row": 1, "raw": "", "reason": "blank line"}
    storage.replace_partition("rejected_inputs", "a", pl.DataFrame([row]))
    storage.replace_partition("rejected_inputs", "b", pl.DataFrame([{**row, "batch_id": "b"}]))
    # A frame that breaks the table's constraints: the old rows of batch a must survive.
    broken = pl.DataFrame([{**row, "reason": None}], schema_overrides={"reason": pl.String})
    with pytest.raises(duckdb.ConstraintException):
        storage.replace_partition("rejected_inputs", "a", broken)
    counts = storage.query(
        "SELECT batch_id, count(*) AS n FROM rejected_inputs GROUP BY 1 ORDER BY 1"
    )
    assert counts.to_dicts() == [{"batch_id": "a", "n": 1}, {"batch_id": "b", "n": 1}]


def test_a_new_model_table_is_created_on_first_write(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "db.duckdb")
    storage.replace_partition("top_pairs", "a", pl.DataFrame({"batch_id": ["a"], "pair_id": ["p"]}))
    storage.replace_partition("top_pairs", "a", pl.DataFrame({"batch_id": ["a"], "pair_id": ["q"]}))
    assert storage.query("SELECT pair_id FROM top_pairs")["pair_id"].to_list() == ["q"]
    with pytest.raises(ValueError, match="not a table name"):
        storage.replace_partition("x; DROP TABLE ratings", "a", pl.DataFrame())


def test_a_column_added_to_the_schema_reaches_an_older_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new column is written once, in `schema.TABLES`: a file from before gets it (with
    its default) when opened, and the typed frames carry it."""
    path = tmp_path / "db.duckdb"
    Storage(path).replace_partition(
        "instructions", "a", TABLES["instructions"].frame([instruction_row("i1", "a")])
    )
    table = TABLES["instructions"]
    wider = replace(table, columns=(*table.columns, "language VARCHAR NOT NULL DEFAULT 'en'"))
    monkeypatch.setitem(TABLES, "instructions", wider)
    storage = Storage(path)
    assert storage.query("SELECT instruction_id, language FROM instructions").to_dicts() == [
        {"instruction_id": "i1", "language": "en"}
    ]
    assert wider.frame([instruction_row("i2", "a")]).schema["language"] == pl.String


def test_a_row_without_a_required_column_is_an_error_not_a_null() -> None:
    row = instruction_row("i1", "a")
    del row["instruction"]
    with pytest.raises(ValueError, match=r"instructions: a row without \['instruction'\]"):
        TABLES["instructions"].frame([row])
    # Keys that are not columns (a planner's own state) are left out.
    frame = TABLES["instructions"].frame([{**instruction_row("i1", "a"), "attempt": 2}])
    assert "attempt" not in frame.columns


def test_a_file_whose_lock_cannot_be_created_is_refused_at_once_naming_it(tmp_path: Path) -> None:
    """Locking would wait forever (as with `/proc/prefgen.duckdb`); it fails now instead."""
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    with pytest.raises(StorageUnavailable, match="a-file/prefgen.duckdb: cannot create"):
        Storage(not_a_folder / "prefgen.duckdb")


def test_a_lock_held_elsewhere_times_out_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "prefgen.duckdb"
    storage = Storage(path, lock_timeout_s=0.2)
    holder = FileLock(str(path) + ".lock")  # another process, as flock sees it
    with holder, pytest.raises(StorageUnavailable, match=r"prefgen.duckdb: its lock .* 0 s"):
        storage.query("SELECT 1")
    assert storage.query("SELECT 1 AS one")["one"].to_list() == [1]  # free again: fine


def test_a_session_makes_its_statements_on_one_connection_and_keeps_other_threads_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = Storage(tmp_path / "p.duckdb")
    storage.query("SELECT 1")  # the schema is made
    opened: list[str] = []
    connect = duckdb.connect
    monkeypatch.setattr(
        "prefgen_dagster.storage.store.duckdb.connect",
        lambda path: opened.append(path) or connect(path),
    )
    other: list[int] = []
    thread = threading.Thread(target=lambda: other.append(storage.query("SELECT 2 AS n").height))
    with storage.session():
        storage.save_calls([{"call_id": "c", "model": "m", "request": "{}", "response": "r"}])
        assert list(storage.cached_calls(["c"])) == ["c"]
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive(), "another thread must wait for the session's lock"
        assert storage.query("SELECT count(*) AS n FROM llm_calls")["n"][0] == 1
    thread.join(timeout=30)
    assert other == [1]
    assert len(opened) == 2  # the session's, then the other thread's
    storage.query("SELECT 1")
    assert len(opened) == 3  # outside a session: one per statement


def test_saving_answers_and_failures_counts_failed_runs_and_clears_answered_ones(
    tmp_path: Path,
) -> None:
    storage = Storage(tmp_path / "p.duckdb")
    failure = {"call_id": "a", "model": "m", "error": "Boom: no", "attempts": 3}
    storage.save_calls([], [failure, {**failure, "call_id": "b"}])
    storage.save_calls([], [{**failure, "error": "Boom: again"}])
    failures = storage.failures(["a", "b"])
    assert {cid: (row["runs"], row["error"]) for cid, row in failures.items()} == {
        "a": (2, "Boom: again"),
        "b": (1, "Boom: no"),
    }
    answer = {"call_id": "a", "model": "m", "request": "{}", "response": "r"}
    storage.save_calls([answer], [])
    storage.save_calls([{**answer, "response": "later"}], [])
    assert storage.cached_calls(["a"])["a"]["response"] == "r"  # the first answer stays
    assert list(storage.failures(["a", "b"])) == ["b"]


def test_a_file_removed_while_its_storage_is_kept_gets_its_tables_again(tmp_path: Path) -> None:
    """A run keeps one `Storage` per file; removing the file under it must not leave a
    tableless file behind."""
    storage = Storage(tmp_path / "p.duckdb")
    storage.save_calls([{"call_id": "c", "model": "m", "request": "{}", "response": "r"}])
    (tmp_path / "p.duckdb").unlink()
    assert storage.cached_calls(["c"]) == {}
    assert storage.table_counts()["llm_calls"] == 0
