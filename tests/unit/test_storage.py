"""The DuckDB file: schema versions, whole-partition replacement."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from prefgen_dagster.storage import SCHEMA_VERSION, Storage


def test_a_file_from_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE schema_info (version INTEGER NOT NULL)")
        con.execute("INSERT INTO schema_info VALUES (?)", [SCHEMA_VERSION - 1])
    with pytest.raises(RuntimeError, match=f"{path}: schema version {SCHEMA_VERSION - 1}"):
        Storage(path).query("SELECT 1")


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
