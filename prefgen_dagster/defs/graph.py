"""The whole asset graph for one config and one `dbt_like_sql/` folder: Python stages, SQL
models, checks, and the export, with code versions and automation conditions."""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.defs import versions
from prefgen_dagster.defs.assets import PYTHON_ASSETS
from prefgen_dagster.defs.automation import EXPORT_CONDITION, STAGE_CONDITION
from prefgen_dagster.defs.checks import build_sql_checks
from prefgen_dagster.defs.sql_assets import build_export_asset, build_model_asset
from prefgen_dagster.sql.project import load_project
from prefgen_dagster.stages import BY_ASSET

# The models the export reads (the final pairs, and the texts they point at).
REQUIRED_MODELS = ("candidates", "dpo_pairs")


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
    values = config.sql_vars()

    def checked(asset: str, version: str) -> str:
        checks = [check for check in project.checks if check.asset == asset]
        return versions.with_checks(version, checks, values)

    python_assets = [
        _batch_asset(asset, checked(name, BY_ASSET[name].code_version(config)))
        for asset in PYTHON_ASSETS
        if (name := asset.key.path[-1])
    ]
    models = [
        _batch_asset(
            build_model_asset(model, project),
            checked(model.name, versions.sql_file_version(model, values)),
        )
        for model in project.models.values()
    ]
    export_asset = build_export_asset(project).map_asset_specs(
        lambda spec: spec.replace_attributes(
            code_version=versions.export_version(), automation_condition=EXPORT_CONDITION
        )
    )
    return PipelineGraph([*python_assets, *models], export_asset, build_sql_checks(project))


def _batch_asset(asset: dg.AssetsDefinition, code_version: str) -> dg.AssetsDefinition:
    return asset.map_asset_specs(
        lambda spec: spec.replace_attributes(
            code_version=code_version, automation_condition=STAGE_CONDITION
        )
    )
