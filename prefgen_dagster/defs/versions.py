"""Code versions: what Dagster compares to tell whether a batch's asset is stale.

An asset's rows depend on its code (prompt template, schema, parser, SQL text) and on its own
settings (its part of the config, the models it calls), so both go into its code version,
derived from them; nothing is bumped by hand. Python stages: `stages.Stage.code_version`;
SQL models: their text and the vars they read; the export: its own code. After a code or
config change and a reload of the code location, the UI marks exactly the affected assets as
changed and `automation.STAGE_CONDITION` re-runs only those; assets further down follow
because their inputs' data versions change.
"""

from __future__ import annotations

from typing import Any

from prefgen_dagster.export import dataset
from prefgen_dagster.ids import source_version, stable_hash
from prefgen_dagster.sql.project import SqlCheck, SqlFile

# Vars that stamp where rows came from rather than shape them: `settings_hash` changes with
# every setting, and counting it would mark `dpo_pairs` changed by any edit. The pairs are
# rebuilt, and stamped anew, when a stage before them re-runs (their inputs' data versions).
PROVENANCE_VARS = frozenset({"settings_hash"})


def sql_file_version(model: SqlFile, values: dict[str, Any]) -> str:
    """The SQL text and the values of the vars it reads (`min_margin`, `strategy`, ...)."""
    shaping = [name for name in model.variables if name not in PROVENANCE_VARS]
    return stable_hash([model.sql, {name: values.get(name) for name in shaping}])


def with_checks(version: str, checks: list[SqlCheck], values: dict[str, Any]) -> str:
    """An asset's version with its checks' SQL and vars in it: editing a check or its
    threshold re-runs the asset, and so the check, for every batch."""
    if not checks:
        return version
    return f"{version}+checks-{stable_hash([sql_file_version(c, values) for c in checks], 12)}"


def export_version() -> str:
    """The export writes `dpo_pairs` as it is: only its own code shapes its output."""
    return source_version("export", dataset)
