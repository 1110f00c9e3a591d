"""The Dagster resources: where the pipeline config lives (and what it opens), and the
run's engines."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from prefgen_dagster.config import PipelineConfig, load_config
from prefgen_dagster.cost import BatchPlan, instructions_key, plan_batch
from prefgen_dagster.llm.heap import one_full_collection
from prefgen_dagster.llm.pool import EnginePool
from prefgen_dagster.stages import Section, models_after
from prefgen_dagster.storage.store import Storage

CONFIG_ENV = "PREFGEN_CONFIG"


def default_config_path() -> str:
    """$PREFGEN_CONFIG, else `prefgen.yaml` in the working directory."""
    return os.environ.get(CONFIG_ENV, str(Path.cwd() / "prefgen.yaml"))


class PrefgenResource(dg.ConfigurableResource):
    """The one place the pipeline config comes from: assets, checks, the inbox sensor and
    the catch-up schedule all read it through this resource. A run reads the YAML once,
    when the resource is set up for it (`prefgen run` hands over the config it loaded, see
    `run_resources`); a sensor tick or schedule reads it afresh."""

    config_path: str
    _config: PipelineConfig | None = PrivateAttr(default=None)
    # Batch plans made before the run (`prefgen run`'s estimate), by batch id.
    _plans: dict[str, BatchPlan] = PrivateAttr(default_factory=dict)
    # One `Storage` per DuckDB file for the resource's life: it checks the file's schema on
    # its first connection only.
    _storages: dict[Path, Storage] = PrivateAttr(default_factory=dict)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._config = load_config(self.config_path)

    def config(self) -> PipelineConfig:
        return self._config if self._config is not None else load_config(self.config_path)

    def plan(self, batch_id: str, instructions: list[dict[str, Any]]) -> BatchPlan:
        """The batch's plan: the one handed over when it is for these instructions, else
        made now."""
        config = self.config()
        handed = self._plans.get(batch_id)
        if handed is not None and handed.key == instructions_key(instructions, batch_id):
            return handed
        return plan_batch(instructions, config, batch_id)

    def open(self) -> tuple[PipelineConfig, Storage]:
        """The config and the DuckDB file it names."""
        config = self.config()
        path = config.resolve(config.paths.duckdb_path)
        if path not in self._storages:
            self._storages[path] = Storage(path)
        return config, self._storages[path]


class EnginesResource(dg.ConfigurableResource):
    """The run's engines, one per model (`llm/pool.py`). Dagster sets a resource up once per
    run and process; the code location runs every step of a run in one process
    (`in_process_executor`, as `dg.materialize` does), so a model used by several stages
    starts once per run. The engines are closed when the run ends."""

    _pool: EnginePool | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._pool = EnginePool()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._pool is not None:
            self._pool.close()

    @contextmanager
    def for_stage(self, config: PipelineConfig, section: Section) -> Iterator[EnginePool]:
        """The pool for one stage; afterwards the engines no later stage calls are closed,
        and one full garbage collection frees what the stage left in reference cycles."""
        assert self._pool is not None, "set up by Dagster when a run starts"
        try:
            yield self._pool
        finally:
            # An exception caught in an engine (asyncio cancels connection attempts) keeps
            # its traceback's frames, up to the stage's own with all its plans and answers,
            # in a cycle that only a full collection frees; one that came after the next
            # stage had read its inputs made a 100,000-instruction run peak at 1.35 GB, not
            # 0.96 GB (bench/bench_memory.py). The closing engines' collections join it.
            with one_full_collection():
                self._pool.keep_only(models_after(config, section))


def run_resources(
    config_path: str | Path,
    config: PipelineConfig | None = None,
    plans: dict[str, BatchPlan] | None = None,
) -> dict[str, Any]:
    """The resources every run of the assets takes: the config and the run's engines. An
    in-process run may hand over the `config` it loaded and the `plans` it made: the
    resource is then passed to the steps as it is (Dagster would build a fresh one from
    `config_path`, without them)."""
    prefgen = PrefgenResource(config_path=str(config_path))
    if config is None:
        return {"prefgen": prefgen, "engines": EnginesResource()}
    prefgen._config, prefgen._plans = config, dict(plans or {})
    return {
        "prefgen": dg.ResourceDefinition.hardcoded_resource(prefgen),
        "engines": EnginesResource(),
    }
