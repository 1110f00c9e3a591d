"""Every column the UI or the card shows has a description, written once."""

from __future__ import annotations

import polars as pl

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.export.dataset import to_trl_records
from prefgen_dagster.storage.columns import EXPORT, describe
from prefgen_dagster.storage.schema import TABLES
from prefgen_dagster.storage.store import Storage
from tests.unit.export.test_export import pair_row
from tests.unit.rows import build_models, model_order


def test_every_table_column_is_described() -> None:
    missing = [
        f"{table.name}.{column.split()[0]}"
        for table in TABLES.values()
        for column in table.columns
        if not describe(table.name, column.split()[0])
    ]
    assert missing == []


def test_every_sql_model_column_is_described(storage: Storage, config: PipelineConfig) -> None:
    build_models(storage, config, "b1")  # creates the models' tables from their SELECTs
    types = storage.column_types()
    missing = [
        f"{model}.{column}"
        for model in model_order()
        for column in types[model]
        if not describe(model, column)
    ]
    assert missing == []


def test_every_export_column_is_described() -> None:
    [record] = to_trl_records(pl.DataFrame([pair_row()]))
    assert any(name.startswith("input_") for name in record)
    assert [name for name in record if not describe(EXPORT, name)] == []


def test_a_table_may_say_more_about_a_shared_column() -> None:
    assert "RewardTrainer" in (describe(EXPORT, "margin") or "")
    assert "RewardTrainer" not in (describe("dpo_pairs", "margin") or "")
    # Only the export has the input row's fields as columns.
    assert describe(EXPORT, "input_category") and describe("instructions", "input_x") is None
    assert describe("ratings", "no_such_column") is None
