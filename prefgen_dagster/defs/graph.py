"""The whole asset graph for one config and one `dbt_like_sql/` folder: Python stages, SQL
models, checks, and the export, with code versions, automation conditions, owners, a
`stage` tag (the config section whose settings shape the asset) and, where the table's
columns are known before a run, its column schema."""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.defs import metadata, verdicts, versions
from prefgen_dagster.defs.assets import python_assets, python_checks
from prefgen_dagster.defs.automation import EXPORT_CONDITION, STAGE_CONDITION
from prefgen_dagster.defs.checks import build_checks
from prefgen_dagster.defs.sql_assets import build_export_asset, build_model_asset
from prefgen_dagster.ids import source_version
from prefgen_dagster.sql.project import load_project
from prefgen_dagster.sql.vars import sql_vars
from prefgen_dagster.stages import Section
from prefgen_dagster.storage.schema import TABLES

# The models the export reads (the final pairs, and the texts they point at).
REQUIRED_MODELS = ("candidates", "dpo_pairs")
OWNERS = ["team:prefgen"]
# The section whose settings shape the SQL models (see `stages.SECTIONS`); the export has none.
MODELS_SECTION: Section = "pairing"
EXPORT_STAGE = "export"


@dataclass(frozen=True)
class PipelineGraph:
    batch_assets: list[dg.AssetsDefinition]
    export_asset: dg.AssetsDefinition
    checks: list[dg.AssetChecksDefinition]

    @property
    def definitions(self) -> list:
        return [*self.batch_assets, self.export_asset, *self.checks]


def build_graph(config: PipelineConfig, sql_dir: Path | None = None) -> PipelineGraph:
    project = load_project(sql_dir)
    missing = [name for name in REQUIRED_MODELS if name not in project.models]
    if missing:
        raise ValueError(
            f"dbt_like_sql/models/ needs {', '.join(f'{m}.sql' for m in missing)}: "
            "the export reads it"
        )
    values = sql_vars(config)

    def checked(asset: str, version: str) -> str:
        checks = [check for check in project.checks if check.asset == asset]
        return versions.with_checks(version, checks, values)

    stages = [
        _batch_asset(
            asset, checked(stage.asset, stage.code_version(config)), stage.section, stage.table
        )
        for asset, stage in python_assets()
    ]
    # An input: materialized by each batch run and by the review pull, never by automation.
    inputs = [
        _batch_asset(
            verdicts.human_verdicts,
            source_version(verdicts.VERDICTS, verdicts),
            verdicts.REVIEW_STAGE,
            verdicts.VERDICTS,
            automation=None,
        )
    ]
    models = [
        _batch_asset(
            build_model_asset(model, project),
            checked(model.name, versions.sql_file_version(model, values)),
            MODELS_SECTION,
            model.name,
        )
        for model in project.models.values()
    ]
    export_asset = build_export_asset(project).map_asset_specs(
        lambda spec: spec.replace_attributes(
            code_version=versions.export_version(),
            automation_condition=EXPORT_CONDITION,
            owners=OWNERS,
            tags={**spec.tags, "stage": EXPORT_STAGE},
        )
    )
    return PipelineGraph(
        [*stages, *inputs, *models],
        export_asset,
        build_checks(project, values, python_checks()),
    )


def _batch_asset(
    asset: dg.AssetsDefinition,
    code_version: str,
    stage: str,
    table: str,
    automation: dg.AutomationCondition | None = STAGE_CONDITION,
) -> dg.AssetsDefinition:
    """`table`: the asset's main table; a model's table gets its columns from its first run,
    so only the schema's tables have a column schema before one."""
    known = TABLES.get(table)
    columns = (
        {"dagster/column_schema": metadata.column_schema(table, known.column_types)}
        if known
        else {}
    )
    return asset.map_asset_specs(
        lambda spec: spec.replace_attributes(
            code_version=code_version,
            automation_condition=automation,
            owners=OWNERS,
            tags={**spec.tags, "stage": stage},
            metadata={**spec.metadata, **columns},
        )
    )
