"""A pytest plugin that keeps failures readable on CPython 3.11 (loaded by tests/conftest.py).

Why: pytest reads the source around each traceback entry with `ast.parse`. If the cyclic
garbage collector runs during that parse and finalizes an object whose `__del__` raises (an
openai client whose set-up failed did), pytest's unraisable-exception hook formats that
exception's traceback, which calls `ast.parse` again. CPython 3.11 keeps the AST converter's
recursion depth in interpreter-wide state, so the outer parse finds the inner one's depth and
raises `SystemError: AST constructor recursion depth mismatch`; pytest stops on an
INTERNALERROR and prints no list of failed tests. (The 3.11.8 fix for gh-106905 covers only
error paths of the converter, not this re-entry.)

So: no collection while a report is formatted, and if formatting still fails, a one-line
report of the test's own error instead of an internal error.
"""

from __future__ import annotations

import gc
from collections.abc import Generator

import pytest


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        return (yield)
    except Exception as err:
        excinfo = call.excinfo
        what = f"{excinfo.typename}: {excinfo.value}" if excinfo else "no exception info"
        return pytest.TestReport(
            item.nodeid,
            item.location,
            {name: 1 for name in item.keywords},
            "failed",
            f"{what}\n(pytest could not format the traceback: {type(err).__name__}: {err})",
            call.when,
        )
    finally:
        if enabled:
            gc.enable()
