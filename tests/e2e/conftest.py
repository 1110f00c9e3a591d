"""Fixtures for end-to-end runs on real engines with the tiny local models."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from datasets import Dataset, concatenate_datasets, load_from_disk
from filelock import FileLock

from prefgen_dagster.bundled import TINY_CONFIG
from tests.conftest import CLEAN_ENV

DEMO_TIMEOUT_S = 900


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


def with_reward_model(tiny_models: Path, reward: Path) -> dict[str, Any]:
    """tiny.yaml's models (absolute paths) and the tiny reward model as `tiny-reward`."""
    models = yaml.safe_load(TINY_CONFIG.read_text())["models"]
    for spec in models.values():
        spec["path"] = str(tiny_models / Path(spec["path"]).name)
    models["tiny-reward"] = {
        **models["tiny-qwen2"],
        "path": str(reward),
        "kind": "reward",
        "engine_kwargs": {"enforce_eager": True, "kv_cache_memory_bytes": 67108864},
    }
    return models


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


@dataclass(frozen=True)
class DemoRun:
    """`prefgen demo` as a user runs it, finished: its folder and what it printed."""

    workdir: Path
    result: subprocess.CompletedProcess[str]

    def copy_to(self, folder: Path) -> Path:
        """The demo's config and data copied into `folder` (its models linked, not copied),
        for a test that goes on from the demo's state without changing it for the others."""
        shutil.copytree(
            self.workdir, folder, ignore=shutil.ignore_patterns("models"), dirs_exist_ok=True
        )
        (folder / "models").symlink_to(self.workdir / "models")
        return folder / "prefgen.yaml"


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """The real-model demo, run once per test session (it takes minutes on CPU): the UI test
    looks at it, the label-quality test measures its judge. Under pytest-xdist the workers
    share it: the first to need it runs it under a file lock, the others wait and read what
    it left (the pattern xdist's docs give for session fixtures). Without $DAGSTER_HOME, as a
    user runs it: its runs go to the config's paths.dagster_home."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the session's folder, above each worker's own
    workdir, saved = shared / "demo", shared / "demo-result.json"
    with FileLock(str(shared / "demo.lock")):
        if not saved.exists():
            env = {key: value for key, value in CLEAN_ENV.items() if key != "DAGSTER_HOME"}
            done = subprocess.run(
                [str(Path(sys.executable).parent / "prefgen"), "demo", "--workdir", str(workdir)],
                capture_output=True,
                text=True,
                timeout=DEMO_TIMEOUT_S,
                env={**env, "HF_HUB_OFFLINE": "1"},
            )
            fields = {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
            saved.write_text(json.dumps(fields), encoding="utf-8")
    result = subprocess.CompletedProcess(["prefgen", "demo"], **json.loads(saved.read_text()))
    return DemoRun(workdir, result)
