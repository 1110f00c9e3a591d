"""The DuckDB file: short-lived connections, whole-frame writes, the LLM-call cache (its
tables: `schema.py`).

DuckDB allows one writing process per file, so every connection is opened under a file lock,
held only for the statement(s) at hand (never while an engine generates) and always closed.
A partition's rows are replaced in one transaction, so a crash never leaves half a batch.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from filelock import FileLock, Timeout

from prefgen_dagster.storage.migrate import add_columns, ensure_schema
from prefgen_dagster.storage.schema import PARTITIONED_TABLES, TABLES

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A connection holds the lock for one statement or one batch's write, never for minutes: a
# lock not free after this long is held by a stuck process, or cannot be taken at all.
LOCK_TIMEOUT_S = 120.0
# How DuckDB names the process that holds a file: "... Conflicting lock is held in
# /usr/bin/python3.11 (PID 1234) by user ..." (the user part is not always there).
_LOCK_HOLDER = re.compile(r"lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


class StorageUnavailable(RuntimeError):
    """The DuckDB file cannot be opened or locked; the message names the path and why."""


class Storage:
    """All access to the DuckDB file goes through here."""

    def __init__(self, path: str | Path, lock_timeout_s: float = LOCK_TIMEOUT_S):
        self.path = Path(path)
        lock_path = Path(str(self.path) + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock_path.touch()  # fails now, with the reason, where locking would wait forever
        except OSError as err:
            raise StorageUnavailable(
                f"{self.path}: cannot create the DuckDB file's lock {lock_path}: "
                f"{err.strerror or err}. Set paths.duckdb_path to a writable folder."
            ) from err
        self._lock = FileLock(str(lock_path), timeout=lock_timeout_s)
        self._initialized = False
        # The connection a thread holds for a `session`.
        self._held = threading.local()

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection held under the file lock, closed on exit whatever happens (inside
        a `session`, that session's connection)."""
        held = getattr(self._held, "con", None)
        if held is not None:
            yield held
            return
        try:
            self._lock.acquire()
        except Timeout as err:
            raise StorageUnavailable(
                f"{self.path}: its lock {self._lock.lock_file} was not free within "
                f"{self._lock.timeout:.0f} s; another process holds it (a stuck prefgen run?)"
            ) from err
        try:
            existed = self.path.exists()
            con = self._open()
            try:
                # A file made by this connection (also one removed since the last) is empty.
                if not (self._initialized and existed):
                    ensure_schema(con, self.path)
                    self._initialized = True
                yield con
            finally:
                con.close()
        finally:
            self._lock.release()

    def _open(self) -> duckdb.DuckDBPyConnection:
        """A new connection; a file DuckDB cannot open (held by another process, such as a
        notebook or the Dagster UI, or not a DuckDB file) is a `StorageUnavailable`."""
        try:
            return duckdb.connect(str(self.path))
        except duckdb.IOException as err:
            holder = _LOCK_HOLDER.search(str(err))
            if holder is None:
                raise StorageUnavailable(f"{self.path}: cannot open: {err}") from err
            raise StorageUnavailable(
                f"{self.path}: in use by another process ({holder['program']}, PID "
                f"{holder['pid']}); close the DuckDB file there (a notebook, the Dagster UI?) "
                "and run again"
            ) from err

    @contextmanager
    def session(self) -> Iterator[None]:
        """One connection (and the file lock) for a block of short statements: every
        `connect` of this thread inside the block reuses it. Opening the file costs tens of
        milliseconds, and a step makes several queries. Never around an engine call: the
        lock would stall the other processes and this one's answer writer."""
        with self.connect() as con:
            self._held.con = con
            try:
                yield
            finally:
                self._held.con = None

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pl.DataFrame:
        with self.connect() as con:
            return _frame(con, sql, params)

    def replace_partition(self, table: str, batch_id: str, frame: pl.DataFrame) -> None:
        """Swap a batch's rows for `frame` in one transaction."""
        self.replace_partitions(batch_id, {table: frame})

    def replace_partitions(self, batch_id: str, frames: dict[str, pl.DataFrame]) -> None:
        """Swap a batch's rows in several tables in ONE transaction: all or nothing. A table
        that is not in the schema (a new SQL model's) is created from its frame's columns."""
        for table in frames:
            if table not in PARTITIONED_TABLES and not _IDENTIFIER.fullmatch(table):
                raise ValueError(f"{table!r} is not a table name")
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                for table, frame in frames.items():
                    con.register("incoming", frame.to_arrow())
                    if table not in PARTITIONED_TABLES:
                        con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS FROM incoming LIMIT 0")
                        gained = con.execute("DESCRIBE incoming").fetchall()
                        add_columns(con, table, [f"{name} {kind}" for name, kind, *_ in gained])
                    con.execute(f"DELETE FROM {table} WHERE batch_id = ?", [batch_id])
                    if frame.height:
                        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming")
                    con.unregister("incoming")
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise

    def column_types(self) -> dict[str, dict[str, str]]:
        """{table: {column: type}} for every table in the file (used for SQL lineage)."""
        rows = self.query(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "ORDER BY table_name, ordinal_position"
        )
        schema: dict[str, dict[str, str]] = {}
        for table, column, kind in rows.iter_rows():
            schema.setdefault(table, {})[column] = kind
        return schema

    def record_check(self, row: dict[str, Any]) -> None:
        """A check's outcome for a batch (`check_results`), evaluated now."""
        frame = TABLES["check_results"].frame([{**row, "evaluated_at": None}])
        with self.connect() as con:
            con.register("outcome", frame.drop("evaluated_at").to_arrow())
            con.execute(
                "INSERT OR REPLACE INTO check_results BY NAME "
                "SELECT *, current_timestamp AS evaluated_at FROM outcome"
            )

    def cached_calls(self, call_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Cached responses for the given call ids (missing ids are simply absent)."""
        return self._rows_by_call("llm_calls", call_ids)

    def _rows_by_call(self, table: str, call_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not call_ids:
            return {}
        with self.connect() as con:
            con.register("wanted", pl.DataFrame({"call_id": list(call_ids)}).to_arrow())
            frame = _frame(con, f"SELECT t.* FROM {table} t JOIN wanted USING (call_id)")
        return {row["call_id"]: row for row in frame.iter_rows(named=True)}

    def save_calls(
        self, answered: Sequence[dict[str, Any]], failed: Sequence[dict[str, Any]] = ()
    ) -> None:
        """Answers into the cache (a call already there keeps its row) and out of
        `failed_calls`; failures into `failed_calls`, one more failed run each. One
        connection and one transaction: an engine's answers are saved every few seconds
        while it generates, and each connection costs tens of milliseconds."""
        if not answered and not failed:
            return
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                if answered:
                    con.register("incoming", TABLES["llm_calls"].frame(answered).to_arrow())
                    con.execute("INSERT OR IGNORE INTO llm_calls BY NAME SELECT * FROM incoming")
                    con.execute(
                        "DELETE FROM failed_calls WHERE call_id IN (SELECT call_id FROM incoming)"
                    )
                    con.unregister("incoming")
                if failed:
                    frame = TABLES["failed_calls"].frame(failed).drop("runs")
                    con.register("failing", frame.to_arrow())
                    con.execute(
                        "INSERT OR REPLACE INTO failed_calls BY NAME SELECT f.*, "
                        "coalesce(old.runs, 0) + 1 AS runs FROM failing f "
                        "LEFT JOIN failed_calls old USING (call_id)"
                    )
                    con.unregister("failing")
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise

    def tokens_spent(self, run_id: str) -> int:
        """Prompt + completion tokens of the calls an engine answered for this run."""
        frame = self.query(
            "SELECT coalesce(sum(coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0)), 0)"
            " AS n FROM llm_calls WHERE run_id = ?",
            [run_id],
        )
        return int(frame["n"][0])

    def failures(self, call_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The `failed_calls` rows of these calls (calls that never failed are absent)."""
        return self._rows_by_call("failed_calls", call_ids)

    def retry_failures(self) -> int:
        """Let every failed call be asked again by the next run (their reasons stay until
        then); returns how many there are."""
        with self.connect() as con:
            return con.execute("UPDATE failed_calls SET runs = 0").fetchall()[0][0]

    def table_counts(self, batch_id: str | None = None) -> dict[str, int]:
        """Rows per partitioned table (of one batch, or all), and the calls cached."""
        where, params = (" WHERE batch_id = ?", [batch_id]) if batch_id else ("", [])
        with self.connect() as con:
            # fetchall: a `fetchone` leaves the result open on a session's shared connection
            counts = {
                table: con.execute(f"SELECT count(*) FROM {table}{where}", params).fetchall()[0][0]
                for table in PARTITIONED_TABLES
            }
            counts["llm_calls"] = con.execute("SELECT count(*) FROM llm_calls").fetchall()[0][0]
        return counts


def _frame(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: Sequence[Any] | dict[str, Any] | None = None,
) -> pl.DataFrame:
    """A query's rows as a polars frame (through a relation: no extra copy of the rows)."""
    return con.sql(sql, params=params or None).pl()


def batch_rows(storage: Storage, table: str, batch_id: str, order_by: str) -> list[dict[str, Any]]:
    """A batch's rows of one table, in a fixed order."""
    sql = f"SELECT * FROM {table} WHERE batch_id = ? ORDER BY {order_by}"
    return storage.query(sql, [batch_id]).to_dicts()


def batch_instructions(storage: Storage, batch_id: str) -> dict[str, dict[str, Any]]:
    """A batch's instructions by id, in source order."""
    rows = batch_rows(storage, "instructions", batch_id, "source_row")
    return {row["instruction_id"]: row for row in rows}
