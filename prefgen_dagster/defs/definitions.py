"""The Dagster code location: `dagster dev -w workspace.yaml` loads `defs` from here.

Loading reads the pipeline config ($PREFGEN_CONFIG, else `prefgen.yaml` in the working
directory): the assets' code versions come from it. After editing the config, reload the
code location so the UI and the automation conditions see the change.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from prefgen_dagster.config import load_config
from prefgen_dagster.defs.automation import (
    automation_sensor,
    batch_job,
    catch_up_schedule,
    inbox_sensor,
)
from prefgen_dagster.defs.graph import build_graph
from prefgen_dagster.defs.resources import default_config_path, run_resources
from prefgen_dagster.defs.review import review_pull_job, review_push_job, review_sensor


def build_definitions(
    config_path: str | None = None, sql_dir: Path | None = None
) -> dg.Definitions:
    """Everything Dagster loads; the SQL folder is $PREFGEN_SQL_DIR or `dbt_like_sql/`."""
    config_path = config_path or default_config_path()
    # The graph needs the config's shape only, and loads before the models are made (as the
    # bundled tiny.yaml does): whether a model folder or an API key is there is checked
    # when a run, the sensor or the schedule reads the config through the resource.
    graph = build_graph(load_config(config_path, check_environment=False), sql_dir)
    return dg.Definitions(
        assets=[*graph.batch_assets, graph.export_asset],
        asset_checks=graph.checks,
        jobs=[batch_job, review_push_job, review_pull_job],
        sensors=[inbox_sensor, automation_sensor, review_sensor],
        schedules=[catch_up_schedule],
        resources=run_resources(config_path),
        # Every step of a run in the run's process: a model used by several stages starts
        # once per run (`EnginesResource`). The stages run one after another anyway.
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Built when Dagster loads the code location, not when this module is imported."""
    return build_definitions()
