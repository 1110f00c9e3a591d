"""Bringing a DuckDB file to the schema of this prefgen: a new file gets every table, an older
one its migration steps (`schema.MIGRATIONS`) and the columns added since, in one
transaction; a file written by a newer prefgen is refused."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import duckdb

from prefgen_dagster.storage.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION, TABLES


def ensure_schema(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Create the tables of a new file, migrate an older one, refuse a newer one."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_info (version INTEGER NOT NULL)")
    found = con.execute("SELECT max(version) FROM schema_info").fetchall()[0][0]
    if found is not None and found > SCHEMA_VERSION:
        raise RuntimeError(
            f"{path}: schema version {found} was written by a newer prefgen; this one "
            f"knows versions up to {SCHEMA_VERSION}. Upgrade prefgen to use this file."
        )
    con.execute("BEGIN TRANSACTION")
    try:
        for version in range(found or SCHEMA_VERSION, SCHEMA_VERSION):
            for statement in MIGRATIONS[version]:
                con.execute(statement)
        con.execute(SCHEMA)
        _add_new_columns(con)
        if found != SCHEMA_VERSION:
            con.execute("DELETE FROM schema_info")
            con.execute("INSERT INTO schema_info VALUES (?)", [SCHEMA_VERSION])
        con.execute("COMMIT")
    except Exception as err:
        con.execute("ROLLBACK")
        raise RuntimeError(
            f"{path}: could not bring schema version {found} to {SCHEMA_VERSION}; "
            f"the file is unchanged: {err}"
        ) from err


def _add_new_columns(con: duckdb.DuckDBPyConnection) -> None:
    """Give an existing file the columns added to `schema.TABLES` since it was written (with
    their defaults), so a new column needs no migration step."""
    for table in TABLES.values():
        add_columns(con, table.name, table.columns)


def add_columns(con: duckdb.DuckDBPyConnection, table: str, columns: Iterable[str]) -> None:
    """Add the columns (`name TYPE ...`) a table lacks: a schema table's new ones, or those
    a SQL model's SELECT gained since its table was made from its first rows."""
    present = {row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()}
    for column in columns:
        if column.split()[0] not in present:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
