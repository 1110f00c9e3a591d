"""The package's shape: Dagster stays in the definitions layer, and no module or function
grows past what a reader takes in at once."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import prefgen_dagster

PACKAGE = Path(prefgen_dagster.__file__).parent
# The definitions layer, and the CLI that starts runs.
MAY_IMPORT_DAGSTER = ("defs/", "cli.py")
MAX_LINES = 300
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_the_definitions_layer_imports_dagster() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in _modules()
        if not str(path.relative_to(PACKAGE)).startswith(MAY_IMPORT_DAGSTER)
        and {"dagster", "dagster_webserver", "dagster_graphql"} & _imported_roots(path)
    ]
    assert offenders == []


def test_the_layout_check_sees_an_import(tmp_path: Path) -> None:
    module = tmp_path / "stage.py"
    module.write_text("def f():\n    from dagster import asset\n", encoding="utf-8")
    assert "dagster" in _imported_roots(module)


def test_no_module_is_too_long() -> None:
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in _modules()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_no_function_is_too_long() -> None:
    long = {
        f"{path.relative_to(PACKAGE)}:{node.name}": n
        for path in _modules()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (n := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES
    }
    assert long == {}


def test_unit_tests_mirror_the_package() -> None:
    """tests/unit/<area>/ tests prefgen_dagster/<area>/ (cross-stage tests stay at the top)."""
    here = Path(__file__).parent
    areas = {p.name for p in here.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert areas and areas <= {p.name for p in PACKAGE.iterdir() if p.is_dir()}


def test_the_benchmarks_import_modules_that_exist() -> None:
    """bench/ is not run by CI; its imports (at any depth) must still name real modules."""
    bench = PACKAGE.parent / "bench"
    imported = set()
    for path in bench.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module)
    ours = sorted(name for name in imported if name.split(".")[0] == "prefgen_dagster")
    assert ours
    assert [name for name in ours if importlib.util.find_spec(name) is None] == []
