"""Materialize one batch (all stages and their checks), then the export, in-process."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from prefgen_dagster.config import load_config
from prefgen_dagster.defs.graph import PipelineGraph, build_graph
from prefgen_dagster.defs.partitions import batches
from prefgen_dagster.defs.resources import PrefgenResource


def _run(
    graph: PipelineGraph,
    selection: list[dg.AssetsDefinition],
    config_path: str | Path,
    instance: dg.DagsterInstance,
    log_level: str,
    partition_key: str | None = None,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        graph.definitions,
        selection=dg.AssetSelection.assets(*selection),
        partition_key=partition_key,
        instance=instance,
        resources={"prefgen": PrefgenResource(config_path=str(Path(config_path).resolve()))},
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        raise_on_error=False,
    )


def materialize_export(
    config_path: str | Path,
    instance: dg.DagsterInstance,
    log_level: str = "INFO",
    sql_dir: Path | None = None,
) -> dg.ExecuteInProcessResult:
    """The export alone: every batch whose blocking checks passed."""
    graph = build_graph(load_config(config_path), sql_dir)
    return _run(graph, [graph.export_asset], config_path, instance, log_level)


def materialize_batch(
    config_path: str | Path,
    batch_id: str,
    instance: dg.DagsterInstance,
    log_level: str = "INFO",
    sql_dir: Path | None = None,
) -> tuple[dg.ExecuteInProcessResult, dg.ExecuteInProcessResult | None]:
    """(batch run, export run); the export runs only if the batch run succeeded (a failed
    blocking check fails the batch run). `sql_dir` replaces `dbt_like_sql/` (default:
    $PREFGEN_SQL_DIR or the project's)."""
    instance.add_dynamic_partitions(batches.name, [batch_id])
    graph = build_graph(load_config(config_path), sql_dir)
    batch = _run(graph, graph.batch_assets, config_path, instance, log_level, batch_id)
    if not batch.success:
        return batch, None
    return batch, _run(graph, [graph.export_asset], config_path, instance, log_level)
