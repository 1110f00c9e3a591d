"""`dbt_like_sql/`: SQL models and SQL checks, loaded and validated at definition time.

A model is a `SELECT` that builds one partitioned table; a check is a `SELECT` returning the
offending rows. Both name tables with `{{ ref('table') }}` — rendered as that table limited
to the batch at hand — and config values with `{{ var('name') }}`, rendered as a bound
parameter (values are never pasted into SQL text).

A check file starts with a header of `-- key: value` lines:

    -- asset: dpo_pairs          (the asset the check guards)
    -- severity: WARN            (WARN or ERROR)
    -- blocking: false           (ERROR + blocking stops downstream steps, and the export)
    -- filter: true              (its rows' pair_id are dropped from the exported pairs)
    -- description: one line for the UI
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot.errors import ParseError

SQL_ROOT = Path(__file__).resolve().parent.parent / "dbt_like_sql"

# Tables a model or check may ref, and the asset that writes each.
TABLE_ASSETS = {
    "instructions": "raw_instructions",
    "rejected_inputs": "raw_instructions",
    "completions": "pooled_completions",
    "evolved_completions": "evolved_completions",
    "ratings": "ratings",
    "dpo_pairs": "dpo_pairs",
}

_REF = re.compile(r"\{\{\s*ref\(\s*'([A-Za-z_][A-Za-z0-9_]*)'\s*\)\s*\}\}")
_VAR = re.compile(r"\{\{\s*var\(\s*'([A-Za-z_][A-Za-z0-9_]*)'\s*\)\s*\}\}")
_HEADER = re.compile(r"^--\s*([a-z_]+)\s*:\s*(.*?)\s*$")
_REQUIRED_CHECK_FIELDS = ("asset", "severity", "blocking", "filter", "description")


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
    filter: bool
    description: str


def _parse_file(path: Path) -> SqlFile:
    sql = path.read_text(encoding="utf-8")
    refs = tuple(dict.fromkeys(_REF.findall(sql)))
    unknown = [ref for ref in refs if ref not in TABLE_ASSETS]
    if unknown:
        raise SqlFileError(f"{path}: unknown ref(s) {unknown}; known: {sorted(TABLE_ASSETS)}")
    probe = _VAR.sub("NULL", _REF.sub(lambda m: m.group(1), sql))
    try:
        statements = [s for s in sqlglot.parse(probe, read="duckdb") if s is not None]
    except ParseError as err:
        raise SqlFileError(f"{path}: SQL syntax error: {err}") from err
    if len(statements) != 1 or not isinstance(statements[0], sqlglot.exp.Query):
        raise SqlFileError(f"{path}: must hold exactly one SELECT statement")
    return SqlFile(path.stem, path, sql, refs, tuple(dict.fromkeys(_VAR.findall(sql))))


def load_models(root: Path = SQL_ROOT) -> dict[str, SqlFile]:
    models = {}
    for path in sorted((root / "models").glob("*.sql")):
        model = _parse_file(path)
        if model.name not in TABLE_ASSETS:
            raise SqlFileError(f"{path}: a model must build one of {sorted(TABLE_ASSETS)}")
        models[model.name] = model
    return models


def load_checks(root: Path = SQL_ROOT) -> list[SqlCheck]:
    checks = []
    for path in sorted((root / "checks").glob("*.sql")):
        base = _parse_file(path)
        header = _read_header(path)
        missing = [field for field in _REQUIRED_CHECK_FIELDS if field not in header]
        if missing:
            raise SqlFileError(f"{path}: header is missing {missing}")
        if header["asset"] not in set(TABLE_ASSETS.values()):
            raise SqlFileError(f"{path}: unknown asset {header['asset']!r}")
        severity = header["severity"].upper()
        if severity not in ("WARN", "ERROR"):
            raise SqlFileError(f"{path}: severity must be WARN or ERROR, not {severity!r}")
        checks.append(
            SqlCheck(
                **base.__dict__,
                asset=header["asset"],
                severity=severity,
                blocking=_flag(path, header, "blocking"),
                filter=_flag(path, header, "filter"),
                description=header["description"],
            )
        )
    return checks


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
