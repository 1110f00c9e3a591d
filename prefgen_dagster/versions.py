"""Code versions: what Dagster compares to tell whether a batch's asset is stale.

An asset's rows depend on its code (prompt template, SQL text) and on its own settings (its
part of the config, the models it calls), so both go into its code version. After a config
change and a reload of the code location, the UI marks exactly the affected assets as
changed and `automation.STAGE_CONDITION` re-runs only those; assets further down follow
because their inputs' data versions change.
"""

from __future__ import annotations

from typing import Any

from prefgen_dagster import canaries
from prefgen_dagster.config import PipelineConfig, Stage
from prefgen_dagster.ids import stable_hash
from prefgen_dagster.prompts import evol_quality, generation, ultrafeedback
from prefgen_dagster.sql_layer import SqlCheck, SqlFile

INGEST_VERSION = "ingest-v1"
EXPORT_VERSION = "export-v1"

# Each Python asset: the stage whose settings it depends on, and the version of its code.
PYTHON_ASSET_CODE: dict[str, tuple[Stage, str]] = {
    "raw_instructions": ("ingest", INGEST_VERSION),
    "pooled_completions": ("generation", generation.TEMPLATE_VERSION),
    "evolved_completions": ("evol_quality", evol_quality.TEMPLATE_VERSION),
    "ratings": ("judge", f"{ultrafeedback.TEMPLATE_VERSION}+{canaries.VERSION}"),
}


def python_asset_version(asset: str, config: PipelineConfig) -> str:
    stage, code = PYTHON_ASSET_CODE[asset]
    return f"{code}+{config.stage_hash(stage)}"


def sql_file_version(model: SqlFile, values: dict[str, Any]) -> str:
    """The SQL text and the values of the vars it reads (`min_margin`, `strategy`, ...)."""
    return stable_hash([model.sql, {name: values.get(name) for name in model.variables}])


def export_version(checks: list[SqlCheck], values: dict[str, Any]) -> str:
    """The export applies the checks' verdicts: their SQL and vars are part of its code."""
    return stable_hash([EXPORT_VERSION, *(sql_file_version(check, values) for check in checks)])
