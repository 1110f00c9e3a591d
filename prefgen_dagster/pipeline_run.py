"""Materialize one batch (all stages and their checks), then the export, in-process."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from prefgen_dagster.graph import build_graph
from prefgen_dagster.partitions import batches
from prefgen_dagster.resources import PrefgenResource


def materialize_batch(
    config_path: str | Path,
    batch_id: str,
    instance: dg.DagsterInstance,
    log_level: str = "INFO",
) -> tuple[dg.ExecuteInProcessResult, dg.ExecuteInProcessResult | None]:
    """(batch run, export run); the export runs only if the batch run succeeded."""
    instance.add_dynamic_partitions(batches.name, [batch_id])
    resources = {"prefgen": PrefgenResource(config_path=str(Path(config_path).resolve()))}
    graph = build_graph()
    definitions = graph.definitions
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    batch = dg.materialize(
        definitions,
        selection=dg.AssetSelection.assets(*graph.batch_assets),
        partition_key=batch_id,
        instance=instance,
        resources=resources,
        run_config=run_config,
        raise_on_error=False,
    )
    if not batch.success:
        return batch, None
    export = dg.materialize(
        definitions,
        selection=dg.AssetSelection.assets(graph.export_asset),
        instance=instance,
        resources=resources,
        run_config=run_config,
        raise_on_error=False,
    )
    return batch, export
