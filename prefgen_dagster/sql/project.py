"""`dbt_like_sql/`: SQL models and SQL checks, loaded and validated at definition time.

A model is a `SELECT` that builds one partitioned table; a check is a `SELECT` returning the
offending rows. Both name tables with `{{ ref('table') }}` — rendered as that table limited
to the batch at hand — and config values with `{{ var('name') }}`, rendered as a bound
parameter (values are never pasted into SQL text).

A check file starts with a header of `-- key: value` lines:

    -- asset: dpo_pairs          (the asset the check guards)
    -- severity: WARN            (WARN or ERROR)
    -- blocking: false           (ERROR + blocking stops downstream steps, and the export)
    -- description: one line for the UI
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot.errors import ParseError
from sqlglot.lineage import lineage

from prefgen_dagster.stages import BY_ASSET, INPUT_TABLES, STAGE_TABLES

# Installed from a wheel, `dbt_like_sql/` is inside the package; in a checkout, beside it.
_PACKAGE = Path(__file__).resolve().parents[1]
SQL_ROOT = next(
    (p for p in (_PACKAGE / "dbt_like_sql", _PACKAGE.parent / "dbt_like_sql") if p.is_dir()),
    _PACKAGE.parent / "dbt_like_sql",
)
SQL_DIR_ENV = "PREFGEN_SQL_DIR"

_REF = re.compile(r"\{\{\s*ref\(\s*'([A-Za-z_][A-Za-z0-9_]*)'\s*\)\s*\}\}")
_VAR = re.compile(r"\{\{\s*var\(\s*'([A-Za-z_][A-Za-z0-9_]*)'\s*\)\s*\}\}")
_HEADER = re.compile(r"^--\s*([a-z_]+)\s*:\s*(.*?)\s*$")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REQUIRED_CHECK_FIELDS = ("asset", "severity", "blocking", "description")


class SqlFileError(ValueError):
    """A model or check file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class SqlFile:
    name: str
    path: Path
    sql: str
    refs: tuple[str, ...]
    variables: tuple[str, ...]

    def render(self, batch_id: str, values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """SQL text with refs scoped to the batch, and the parameters it binds."""
        missing = [name for name in self.variables if name not in values]
        if missing:
            raise SqlFileError(f"{self.path}: no value for var(s) {missing}")
        text = _REF.sub(
            lambda m: f"(SELECT * FROM {m.group(1)} WHERE batch_id = $batch_id)", self.sql
        )
        text = _VAR.sub(lambda m: f"${m.group(1)}", text)
        params = {name: values[name] for name in self.variables}
        params["batch_id"] = batch_id
        return text, params


@dataclass(frozen=True)
class SqlCheck(SqlFile):
    asset: str
    severity: str
    blocking: bool
    description: str


def sql_root() -> Path:
    """$PREFGEN_SQL_DIR, else the project's `dbt_like_sql/`."""
    return Path(os.environ.get(SQL_DIR_ENV) or SQL_ROOT)


@dataclass(frozen=True)
class SqlProject:
    """Every model and check of one `dbt_like_sql/` folder, validated together."""

    models: dict[str, SqlFile]
    checks: list[SqlCheck]

    @property
    def assets(self) -> set[str]:
        return set(BY_ASSET) | set(self.models)


def load_project(root: Path | None = None) -> SqlProject:
    """Load and check every file now, so a bad one fails when definitions load, not at run
    time: syntax, one SELECT per file, known refs, complete check headers."""
    root = root or sql_root()
    files = {path.stem: _parse_file(path) for path in sorted((root / "models").glob("*.sql"))}
    sources = {*STAGE_TABLES, *INPUT_TABLES}
    known = sources | set(files)
    for model in files.values():
        if not _IDENTIFIER.fullmatch(model.name) or model.name in sources:
            raise SqlFileError(f"{model.path}: a model's file name must be a new table name")
        _check_refs(model, known)
    project = SqlProject(files, [])
    for path in sorted((root / "checks").glob("*.sql")):
        check = _parse_check(path, project.assets)
        _check_refs(check, known)
        project.checks.append(check)
    return project


def _check_refs(sql_file: SqlFile, known: set[str]) -> None:
    unknown = [ref for ref in sql_file.refs if ref not in known]
    if unknown:
        raise SqlFileError(f"{sql_file.path}: unknown ref(s) {unknown}; known: {sorted(known)}")


def _parse_file(path: Path) -> SqlFile:
    sql = path.read_text(encoding="utf-8")
    try:
        statements = [s for s in sqlglot.parse(_probe(sql), read="duckdb") if s is not None]
    except ParseError as err:
        raise SqlFileError(f"{path}: SQL syntax error: {err}") from err
    if len(statements) != 1 or not isinstance(statements[0], sqlglot.exp.Query):
        raise SqlFileError(f"{path}: must hold exactly one SELECT statement")
    refs = tuple(dict.fromkeys(_REF.findall(sql)))
    return SqlFile(path.stem, path, sql, refs, tuple(dict.fromkeys(_VAR.findall(sql))))


def _probe(sql: str) -> str:
    """The SQL with refs as plain table names and vars as NULL, for parsing and lineage."""
    return _VAR.sub("NULL", _REF.sub(lambda m: m.group(1), sql))


def _parse_check(path: Path, assets: set[str]) -> SqlCheck:
    base = _parse_file(path)
    header = _read_header(path)
    missing = [field for field in _REQUIRED_CHECK_FIELDS if field not in header]
    if missing:
        raise SqlFileError(f"{path}: header is missing {missing}")
    if header["asset"] not in assets:
        raise SqlFileError(f"{path}: unknown asset {header['asset']!r}; known: {sorted(assets)}")
    severity = header["severity"].upper()
    if severity not in ("WARN", "ERROR"):
        raise SqlFileError(f"{path}: severity must be WARN or ERROR, not {severity!r}")
    return SqlCheck(
        **base.__dict__,
        asset=header["asset"],
        severity=severity,
        blocking=_flag(path, header, "blocking"),
        description=header["description"],
    )


def column_lineage(
    model: SqlFile, schema: dict[str, dict[str, str]]
) -> dict[str, list[tuple[str, str]]]:
    """For each output column of a model, the (table, column) pairs it is computed from."""
    # Every column at once: the query is parsed and qualified once, not once per column.
    nodes = lineage(None, _probe(model.sql), schema=schema, dialect="duckdb")
    return {
        column: sorted(
            {
                (leaf.source.name, leaf.name.split(".")[-1])
                for leaf in node.walk()
                if not leaf.downstream and isinstance(leaf.source, sqlglot.exp.Table)
            }
        )
        for column, node in nodes.items()
    }


def _read_header(path: Path) -> dict[str, str]:
    header = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _HEADER.match(line)
        if not match:
            break
        header[match.group(1)] = match.group(2)
    return header


def _flag(path: Path, header: dict[str, str], key: str) -> bool:
    value = header[key].lower()
    if value not in ("true", "false"):
        raise SqlFileError(f"{path}: {key} must be true or false, not {value!r}")
    return value == "true"
