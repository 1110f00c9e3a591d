"""Fixtures for end-to-end runs on real engines with the tiny local models."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from prefgen_dagster.cli import DEMO_CONFIG, make_demo_models


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's two tiny models, built once per test session."""
    base = tmp_path_factory.mktemp("tiny")
    make_demo_models(base)
    return base / "models"


def write_config(workdir: Path, models_dir: Path, **overrides: Any) -> Path:
    """The demo config with absolute model paths, data under `workdir`, and overrides
    applied per top-level section (e.g. models=..., generation=...)."""
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    for spec in config["models"].values():
        spec["path"] = str(models_dir / Path(spec["path"]).name)
    config.update(overrides)
    path = workdir / "prefgen.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def drop_batch(workdir: Path, name: str, lines: list[str]) -> Path:
    """Put an instruction file in the inbox, as a user or upstream job would."""
    inbox = workdir / "data" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    yield tmp_path
    shutil.rmtree(tmp_path / "data", ignore_errors=True)
