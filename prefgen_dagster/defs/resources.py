"""The Dagster resources: where the pipeline config lives (and what it opens), and the
run's engines."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from prefgen_dagster.config import PipelineConfig, load_config
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
    the catch-up schedule all read it through this resource. Every use reads the YAML
    afresh (it is small)."""

    config_path: str
    # One `Storage` per DuckDB file for the resource's life: it checks the file's schema on
    # its first connection only.
    _storages: dict[Path, Storage] = PrivateAttr(default_factory=dict)

    def config(self) -> PipelineConfig:
        return load_config(self.config_path)

    def open(self) -> tuple[PipelineConfig, Storage]:
        """The config, read once, and the DuckDB file it names."""
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


def run_resources(config_path: str | Path) -> dict[str, dg.ConfigurableResource]:
    """The resources every run of the assets takes: the config and the run's engines."""
    return {"prefgen": PrefgenResource(config_path=str(config_path)), "engines": EnginesResource()}
