"""A failing test is listed with its traceback even when formatting that traceback would
trip CPython 3.11's AST re-entry error (tests/readable_failures.py says why)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The collector finalizes one of these now and then; each leaves a new cycle behind until
# LEFT runs out, so collections keep finding one while pytest formats the failure.
SUITE = """
import gc

LEFT = [1000]


class FailingFinalizer:
    def __del__(self):
        if LEFT[0] > 0:
            LEFT[0] -= 1
            leave_cycle()
        raise AttributeError("a finalizer failed")


def leave_cycle():
    obj = FailingFinalizer()
    obj.me = obj


def test_fails_while_finalizers_fail():
    gc.set_threshold(10)
    leave_cycle()
    assert 1 == 2


def test_passes():
    assert True
"""


def _pytest(tmp_path: Path, *plugins: str) -> str:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_suite.py").write_text(SUITE)
    loads = [arg for plugin in plugins for arg in ("-p", plugin)]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--tb=short", "-p", "no:cacheprovider", *loads],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout + done.stderr


def test_without_the_plugin_pytest_ends_on_an_internal_error(tmp_path: Path) -> None:
    out = _pytest(tmp_path)
    assert "AST constructor recursion depth mismatch" in out
    assert "1 failed" not in out


def test_with_it_the_failure_is_listed_with_its_traceback(tmp_path: Path) -> None:
    out = _pytest(tmp_path, "tests.readable_failures")
    assert "INTERNALERROR" not in out
    assert "FAILED test_suite.py::test_fails_while_finalizers_fail - assert 1 == 2" in out
    assert "1 failed, 1 passed" in out
    assert "E   assert 1 == 2" in out  # the short traceback
