"""The whole asset graph for one `dbt_like_sql/` folder: Python stages, SQL models, checks,
and the export."""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from prefgen_dagster.assets import PYTHON_ASSETS
from prefgen_dagster.checks import build_sql_checks
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


def build_graph(sql_dir: Path | None = None) -> PipelineGraph:
    project = load_project(sql_dir)
    if "dpo_pairs" not in project.models:
        raise ValueError("dbt_like_sql/models/dpo_pairs.sql is required: the export reads it")
    models = [build_model_asset(model, project) for model in project.models.values()]
    return PipelineGraph(
        project,
        [*PYTHON_ASSETS, *models],
        build_export_asset(project),
        build_sql_checks(project),
    )
