"""Fixtures of the OpenAI-compatible engine's tests: fast backoff, scripted servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from prefgen_dagster.llm.engines import openai_http
from tests.unit.llm.fault_server import FaultServer


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries after 0.05-0.2 s instead of seconds."""
    monkeypatch.setattr(openai_http, "BACKOFF_BASE_S", 0.05)
    monkeypatch.setattr(openai_http, "BACKOFF_CAP_S", 0.2)


@pytest.fixture
def serve(fast_backoff: None) -> Iterator[Callable[..., FaultServer]]:
    """`serve(**options)` starts a FaultServer; every one started is closed afterwards."""
    servers: list[FaultServer] = []

    def start(**options: Any) -> FaultServer:
        server = FaultServer(**options)
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.close()
