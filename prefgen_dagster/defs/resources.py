"""The one Dagster resource: where the pipeline config lives, and what it opens."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from prefgen_dagster.config import PipelineConfig, load_config
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

    def config(self) -> PipelineConfig:
        return load_config(self.config_path)

    def open(self) -> tuple[PipelineConfig, Storage]:
        """The config, read once, and the DuckDB file it names."""
        config = self.config()
        return config, Storage(config.resolve(config.paths.duckdb_path))
