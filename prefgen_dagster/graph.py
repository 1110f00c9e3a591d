"""The whole asset graph for one config and one `dbt_like_sql/` folder: Python stages, SQL
models, checks, and the export, with code versions and automation conditions."""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from prefgen_dagster import versions
from prefgen_dagster.assets import PYTHON_ASSETS
from prefgen_dagster.automation import EXPORT_CONDITION, STAGE_CONDITION
from prefgen_dagster.checks import build_sql_checks
from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.sql_assets import build_export_asset, build_model_asset
from prefgen_dagster.sql_layer import SqlProject, load_project


@dataclass(frozen=True)
class PipelineGraph:
    project: SqlProject
    batch_assets: list[dg.AssetsDefinition]
    export_asset: dg.AssetsDefinition
    checks: list[dg.AssetChecksDefinition]

    @property
    def definitions(self) -> list:
        return [*self.batch_assets, self.export_asset, *self.checks]


def build_graph(config: PipelineConfig, sql_dir: Path | None = None) -> PipelineGraph:
    project = load_project(sql_dir)
    if "dpo_pairs" not in project.models:
        raise ValueError("dbt_like_sql/models/dpo_pairs.sql is required: the export reads it")
    values = config.sql_vars()
    python_assets = [
        _batch_asset(asset, versions.python_asset_version(asset.key.path[-1], config))
        for asset in PYTHON_ASSETS
    ]
    models = [
        _batch_asset(build_model_asset(model, project), versions.sql_file_version(model, values))
        for model in project.models.values()
    ]
    export_asset = build_export_asset(project).map_asset_specs(
        lambda spec: spec.replace_attributes(
            code_version=versions.export_version(project.checks, values),
            automation_condition=EXPORT_CONDITION,
        )
    )
    return PipelineGraph(
        project, [*python_assets, *models], export_asset, build_sql_checks(project)
    )


def _batch_asset(asset: dg.AssetsDefinition, code_version: str) -> dg.AssetsDefinition:
    return asset.map_asset_specs(
        lambda spec: spec.replace_attributes(
            code_version=code_version, automation_condition=STAGE_CONDITION
        )
    )
