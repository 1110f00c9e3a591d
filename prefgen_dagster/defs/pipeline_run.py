"""Materialize one batch (all stages and their checks), then the export, in-process."""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from filelock import FileLock

from prefgen_dagster.config import PipelineConfig, load_config
from prefgen_dagster.cost import BatchPlan
from prefgen_dagster.defs.graph import PipelineGraph, build_graph
from prefgen_dagster.defs.partitions import batches
from prefgen_dagster.defs.resources import run_resources
from prefgen_dagster.defs.verdicts import VERDICTS

OPEN_TIMEOUT_S = 60


def open_instance(config: PipelineConfig) -> tuple[dg.DagsterInstance, Path]:
    """The persistent Dagster instance `prefgen run` records its runs in, and its folder:
    $DAGSTER_HOME when set, else the config's `paths.dagster_home` (created if missing).
    `dagster dev` with DAGSTER_HOME set to that folder shows the runs."""
    home = os.environ.get("DAGSTER_HOME")
    if home:
        return dg.DagsterInstance.get(), Path(home)
    folder = config.resolve(config.paths.dagster_home).resolve()  # Dagster wants it absolute
    folder.mkdir(parents=True, exist_ok=True)
    # Opening a new instance creates its tables: two runs starting at once would both try.
    with FileLock(str(folder / "prefgen-open.lock"), timeout=OPEN_TIMEOUT_S):
        return dg.DagsterInstance.from_config(str(folder)), folder


def ui_command(config_path: Path, dagster_home: Path) -> str:
    """The `dagster dev` command that shows the runs recorded in `dagster_home`, with this
    config's assets, sensor and schedule."""
    dagster = Path(sys.executable).parent / "dagster"
    program = str(dagster) if dagster.exists() else "dagster"
    words = [
        f"PREFGEN_CONFIG={shlex.quote(str(config_path.resolve()))}",
        f"DAGSTER_HOME={shlex.quote(str(dagster_home))}",
        shlex.quote(program),
        "dev -m prefgen_dagster.defs.definitions",
    ]
    return " ".join(words)


@dataclass(frozen=True)
class RunSetup:
    """What every run of one `prefgen` command shares: the config (loaded once, by the
    caller or here), its path (the resource's, for the Dagster UI), and the batch plans
    made before the runs (`prefgen run`'s estimate), by batch id."""

    config_path: Path
    config: PipelineConfig
    plans: dict[str, BatchPlan] = field(default_factory=dict)

    @classmethod
    def load(cls, config_path: str | Path) -> RunSetup:
        return cls(Path(config_path).resolve(), load_config(config_path))


def _setup(config_path: str | Path | RunSetup) -> RunSetup:
    return config_path if isinstance(config_path, RunSetup) else RunSetup.load(config_path)


def _run(
    graph: PipelineGraph,
    selection: list[dg.AssetsDefinition] | dg.AssetSelection,
    setup: RunSetup,
    instance: dg.DagsterInstance,
    log_level: str,
    partition_key: str | None = None,
) -> dg.ExecuteInProcessResult:
    if not isinstance(selection, dg.AssetSelection):
        selection = dg.AssetSelection.assets(*selection)
    return dg.materialize(
        graph.definitions,
        selection=selection,
        partition_key=partition_key,
        instance=instance,
        resources=run_resources(setup.config_path, setup.config, setup.plans),
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        raise_on_error=False,
    )


def materialize_export(
    config_path: str | Path | RunSetup,
    instance: dg.DagsterInstance,
    log_level: str = "INFO",
    sql_dir: Path | None = None,
) -> dg.ExecuteInProcessResult:
    """The export alone: every batch whose blocking checks passed."""
    setup = _setup(config_path)
    graph = build_graph(setup.config, sql_dir)
    return _run(graph, [graph.export_asset], setup, instance, log_level)


def materialize_batch(
    config_path: str | Path | RunSetup,
    batch_id: str,
    instance: dg.DagsterInstance,
    log_level: str = "INFO",
    sql_dir: Path | None = None,
) -> tuple[dg.ExecuteInProcessResult, dg.ExecuteInProcessResult | None]:
    """(batch run, export run; see `_then_export`). `config_path` may be a `RunSetup` (the
    config already loaded); `sql_dir` replaces `dbt_like_sql/` (default: $PREFGEN_SQL_DIR
    or the project's)."""
    setup = _setup(config_path)
    instance.add_dynamic_partitions(batches.name, [batch_id])
    graph = build_graph(setup.config, sql_dir)
    batch = _run(graph, graph.batch_assets, setup, instance, log_level, batch_id)
    return _then_export(batch, graph, setup, instance, log_level)


def materialize_verdicts(
    config_path: str | Path | RunSetup,
    batch_id: str,
    instance: dg.DagsterInstance,
    log_level: str = "INFO",
    sql_dir: Path | None = None,
) -> tuple[dg.ExecuteInProcessResult, dg.ExecuteInProcessResult | None]:
    """After a review pull: (the batch's `human_verdicts` and every batch asset after it,
    with their checks; the export, if that run succeeded). Only the pair models are
    downstream of the verdicts, so no engine starts."""
    setup = _setup(config_path)
    graph = build_graph(setup.config, sql_dir)
    after = dg.AssetSelection.assets(VERDICTS).downstream() - dg.AssetSelection.assets(
        graph.export_asset
    )
    batch = _run(graph, after, setup, instance, log_level, batch_id)
    return _then_export(batch, graph, setup, instance, log_level)


def _then_export(
    batch: dg.ExecuteInProcessResult,
    graph: PipelineGraph,
    setup: RunSetup,
    instance: dg.DagsterInstance,
    log_level: str,
) -> tuple[dg.ExecuteInProcessResult, dg.ExecuteInProcessResult | None]:
    """(batch run, export run): the export runs only if the batch run succeeded (a failed
    blocking check fails the batch run)."""
    if not batch.success:
        return batch, None
    return batch, _run(graph, [graph.export_asset], setup, instance, log_level)
