"""Settings every test needs: no hub access, vLLM in-process, no stale Dagster state."""

import gc
import os
from collections.abc import Iterator

import pytest

# Its hook keeps a failure readable when pytest cannot format its traceback (see there).
from tests.readable_failures import pytest_runtest_makereport  # noqa: F401

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

# vLLM changes os.environ when an in-process engine starts (LD_PRELOAD, shared-memory names,
# …); subprocesses started by tests get the environment as it was before any engine ran.
CLEAN_ENV = dict(os.environ)


@pytest.fixture
def fresh_dagster_state() -> Iterator[None]:
    """Start each test without a current Dagster definitions-state storage. An instance
    entered with `with` makes its storage the current one and leaves it there after it is
    disposed; when the garbage collector finally closes that context, it puts back the one
    before, as likely dead. A test that builds definitions then reads a dead instance ("unable
    to open database file", or "undefined DagsterInstance weakref"). So: let the collector
    close the old contexts now, then start from none. (Used by the tests that run Dagster;
    a collection per test is too slow for all of them.)"""
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    gc.collect()
    with set_defs_state_storage(None):
        yield
