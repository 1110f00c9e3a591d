"""prefgen installed from its wheel, not from the checkout: the SQL ships inside the package,
and the definitions load."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What the wheel is built from.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "prefgen_dagster", "dbt_like_sql")

LOAD = """
import dagster as dg
import prefgen_dagster
from prefgen_dagster.bundled import TINY_CONFIG
from prefgen_dagster.defs.definitions import build_definitions
from prefgen_dagster.sql.project import SQL_ROOT

defs = build_definitions(config_path=str(TINY_CONFIG))
dg.Definitions.validate_loadable(defs)
keys = sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())
print(prefgen_dagster.__file__)
print(SQL_ROOT)
print(",".join(keys))
"""


@pytest.mark.slow
def test_the_wheel_installs_in_a_fresh_venv_and_loads_its_definitions(tmp_path: Path) -> None:
    # Built from a copy: setuptools writes build/ into the tree it builds, and would reuse a
    # stale one.
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name)
    dist = tmp_path / "dist"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    subprocess.run(
        [*pip_wheel, "--no-build-isolation", "--wheel-dir", str(dist), str(source)], check=True
    )
    [wheel] = dist.glob("prefgen-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
    )
    # The dependencies come from this environment's site-packages (no network here); the
    # fresh venv's own site-packages, holding the wheel, comes first on the path.
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run(
        [python, "-c", LOAD], cwd=tmp_path, check=True, capture_output=True, text=True
    )
    package, sql_root, keys = done.stdout.strip().splitlines()[-3:]
    assert Path(package).is_relative_to(venv)
    assert Path(sql_root) == Path(package).parent / "dbt_like_sql"
    assert {"candidates", "candidate_pairs", "dpo_pairs", "preference_dataset"} <= set(
        keys.split(",")
    )
