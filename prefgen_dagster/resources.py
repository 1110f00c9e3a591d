"""The one Dagster resource: where the pipeline config lives, and what it opens."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from prefgen_dagster.config import PipelineConfig, load_config
from prefgen_dagster.storage import Storage

CONFIG_ENV = "PREFGEN_CONFIG"


def default_config_path() -> str:
    """$PREFGEN_CONFIG, else `prefgen.yaml` in the working directory."""
    return os.environ.get(CONFIG_ENV, str(Path.cwd() / "prefgen.yaml"))


class PrefgenResource(dg.ConfigurableResource):
    """Points at the pipeline YAML; every step reads it afresh (it is small)."""

    config_path: str

    def open(self) -> tuple[PipelineConfig, Storage]:
        """The config, read once, and the DuckDB file it names."""
        config = load_config(self.config_path)
        return config, Storage(config.resolve(config.paths.duckdb_path))
