"""The Dagster code location: `dagster dev -w workspace.yaml` loads `defs` from here."""

from __future__ import annotations

import dagster as dg

from prefgen_dagster.assets import BATCH_ASSETS, preference_dataset
from prefgen_dagster.automation import batch_job, catch_up_schedule, inbox_sensor
from prefgen_dagster.checks import build_sql_checks
from prefgen_dagster.resources import PrefgenResource, default_config_path


def build_definitions(config_path: str | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=[*BATCH_ASSETS, preference_dataset],
        asset_checks=build_sql_checks(),
        jobs=[batch_job],
        sensors=[inbox_sensor],
        schedules=[catch_up_schedule],
        resources={"prefgen": PrefgenResource(config_path=config_path or default_config_path())},
    )


defs = build_definitions()
