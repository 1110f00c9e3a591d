"""Shared helpers for the fast unit tests: a small pipeline config and a tmp DuckDB file.

Nothing here (or in any unit test) may import an engine backend: a unit test module fails
if it brings `vllm` into `sys.modules`.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.storage.store import Storage

BASE_CONFIG: dict[str, Any] = {
    "models": {
        "gen-a": {"path": "models/gen-a", "backend": "vllm"},
        "gen-b": {"path": "models/gen-b", "backend": "vllm"},
        "judge-m": {"path": "models/judge", "backend": "vllm"},
    },
    "generation": {
        "seed": 11,
        "pool": [
            {
                "model": "gen-a",
                "num_completions": 2,
                "sampling": {"temperature": 1.0, "top_p": 0.95, "max_tokens": 48},
            },
            {
                "model": "gen-b",
                "num_completions": 3,
                "system_prompt": "You are a helpful, honest assistant.",
                "sampling": {"temperature": 0.9, "top_p": 0.95, "max_tokens": 48},
            },
        ],
    },
    "evol_quality": {"model": "gen-a", "num_evolutions": 1, "seed": 5},
    "judge": {"model": "judge-m", "rationale_max_chars": 60, "max_reasks": 1},
    "pairing": {"strategy": "best_vs_worst", "min_margin": 1.0},
}


def config_dict(**sections: Any) -> dict[str, Any]:
    """A deep copy of BASE_CONFIG with whole top-level sections replaced."""
    raw = copy.deepcopy(BASE_CONFIG)
    raw.update(copy.deepcopy(sections))
    return raw


def _make_config(**sections: Any) -> PipelineConfig:
    return PipelineConfig.model_validate(config_dict(**sections))


@pytest.fixture
def make_config() -> Callable[..., PipelineConfig]:
    """`make_config(judge={...})`: the base config with whole sections replaced."""
    return _make_config


@pytest.fixture
def config() -> PipelineConfig:
    return _make_config()


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    """A fresh DuckDB file with the full schema."""
    store = Storage(tmp_path / "db" / "prefgen.duckdb")
    store.table_counts()  # first connection creates the schema
    return store


def _insert_rows(storage: Storage, table: str, rows: list[dict[str, Any]]) -> None:
    with storage.connect() as con:
        for row in rows:
            columns = ", ".join(row)
            marks = ", ".join("?" for _ in row)
            con.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(row.values()))


@pytest.fixture
def insert_rows(storage: Storage) -> Callable[[str, list[dict[str, Any]]], None]:
    """`insert_rows(table, rows)`: plain SQL inserts into the tmp DuckDB file."""
    return lambda table, rows: _insert_rows(storage, table, rows)


@pytest.fixture(autouse=True, scope="module")
def _no_engine_imports() -> Iterator[None]:
    """Fail a unit test module that imports vllm (e2e tests in the same session may)."""
    already = "vllm" in sys.modules
    yield
    if not already:
        assert "vllm" not in sys.modules, "a unit test imported vllm"
