"""The environment is the lock: what is installed matches locks/, and the locks answer
pyproject.toml's ranges (scripts/setup.sh, scripts/check_env.py, scripts/lock.sh)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
# scripts/lock.sh --upgrade runs these tests in a scratch venv made from scratch locks.
LOCKS = Path(os.environ.get("LOCK_DIR", ROOT / "locks"))
CHECK = ROOT / "scripts" / "check_env.py"
CPU_EXTRAS = ("cpu", "tiny", "dev", "ray")  # what locks/cpu.txt is made from (tiny via cpu)


def _check(*locks: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), *map(str, locks)], capture_output=True, text=True
    )


def _pins(lock: Path) -> dict[str, str]:
    sys.path.insert(0, str(CHECK.parent))
    try:
        from check_env import read_lock
    finally:
        sys.path.pop(0)
    return read_lock(lock)


def test_the_installed_environment_is_exactly_the_lock() -> None:
    done = _check(LOCKS / "cpu.txt", LOCKS / "models.txt")
    assert done.returncode == 0, done.stderr


def test_a_version_that_differs_from_the_lock_is_named(tmp_path: Path) -> None:
    lock = (LOCKS / "cpu.txt").read_text()
    version = _pins(LOCKS / "cpu.txt")["duckdb"]
    doctored = tmp_path / "cpu.txt"
    doctored.write_text(
        lock.replace(f"duckdb=={version}", "duckdb==0.0.1").replace("\npolars==", "\n#polars==")
    )
    done = _check(doctored, LOCKS / "models.txt")
    assert done.returncode == 1
    assert f"duckdb: locked 0.0.1, installed {version}" in done.stderr
    assert "polars: " in done.stderr and "installed, not in the lock" in done.stderr


def test_every_declared_dependency_is_locked_within_its_range() -> None:
    """A range edited in pyproject.toml without `scripts/lock.sh` fails here."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in CPU_EXTRAS:
        declared += project["optional-dependencies"][extra]
    pins = _pins(LOCKS / "cpu.txt")
    for line in declared:
        req = Requirement(line)
        if req.name == project["name"]:  # prefgen[tiny]: its own extra, checked above
            continue
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is declared but not in locks/cpu.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} in the lock is outside {req.specifier}"
        )


def test_deptry_fails_on_an_undeclared_import(tmp_path: Path) -> None:
    """The check scripts/test.sh runs: importing httpx (which openai pulls in, but which is
    not declared) is the import that broke every OpenAI-server request."""
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    package = tmp_path / "prefgen_dagster"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "engine.py").write_text("import httpx\nimport openai\n")
    deptry = Path(sys.executable).parent / "deptry"
    done = subprocess.run(
        [str(deptry), "--no-ansi", "."], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "prefgen_dagster/engine.py:1:8: DEP003 'httpx'" in done.stdout + done.stderr
