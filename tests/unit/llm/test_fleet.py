"""Several base URLs for one model: the choice of server, the cool-down of one that keeps
failing, and what a stage gets when every server is down.

The choice and the cool-down are tested as pure logic (the time is passed in); the engine
against real HTTP servers on 127.0.0.1 (`fault_server`), counting each server's hits.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest
from pydantic import ValidationError

from prefgen_dagster.config.base import ModelSpec, SamplingParams
from prefgen_dagster.llm.engines.fleet import (
    CoolDown,
    Fleet,
    Server,
    ServersCoolingDown,
    choose,
)
from prefgen_dagster.llm.engines.openai_http import OpenAIHTTPEngine
from prefgen_dagster.llm.engines.pacing import AdaptiveLimit, StallTimer
from prefgen_dagster.llm.types import LLMRequest, LLMResult
from tests.unit.llm.fault_server import FaultServer


def server(active: int = 0, limit: float = 4.0, until: float | None = None) -> Server[None]:
    """A server with `active` attempts in flight under a concurrency limit of `limit`."""
    health = CoolDown(3, 10.0, 40.0)
    health.until = until
    adaptive = AdaptiveLimit(4)
    adaptive.active, adaptive.limit = active, limit
    return Server("http://s", None, adaptive, StallTimer(60.0), health)


def generate(prompts: list[str], *urls: str, **spec: Any) -> list[LLMResult]:
    """The prompts through the engine for a model served at `urls`."""
    model = ModelSpec(path="srv", backend="openai", base_urls=list(urls), **spec)
    requests = [
        LLMRequest("srv", [{"role": "user", "content": p}], SamplingParams(), seed=1)
        for p in prompts
    ]
    return OpenAIHTTPEngine(model).generate(requests)


def test_the_server_with_the_most_room_is_chosen_and_a_retry_goes_elsewhere() -> None:
    assert choose([server(active=3), server(active=1)], 0.0, None, 0) == 1
    # Halved after an overload reply: 1 in flight of 2 is fuller than 1 of 4.
    assert choose([server(active=1, limit=2.0), server(active=1)], 0.0, None, 0) == 1
    idle, busy = server(active=0), server(active=2)
    assert choose([idle, busy], 0.0, idle, 0) == 1  # a retry avoids the last server
    assert choose([idle, server(active=4)], 0.0, idle, 0) == 0  # ... unless it alone has room
    assert [choose([server(), server(), server()], 0.0, None, start) for start in (0, 1, 2, 3)] == [
        0,
        1,
        2,
        0,
    ]
    assert choose([server(active=4), server(until=5.0)], 0.0, None, 0) is None


def test_a_server_is_taken_out_after_failures_in_a_row_then_probed_once() -> None:
    health = CoolDown(3, 10.0, 25.0)
    for outcome in ("broken", "broken", "answered", "broken", "overloaded", "failed", "broken"):
        assert health.record(outcome, False, 0.0) is None  # an answer starts the count again
    assert health.record("broken", False, 1.0) == "out"
    assert health.until == 11.0
    assert not health.usable(10.9)
    # Attempts sent before it was taken out change nothing when they end.
    assert health.record("answered", False, 2.0) is None
    assert health.record("broken", False, 2.0) is None
    assert health.usable(11.0)
    assert health.sent()  # the probe: nothing else goes there until it ends
    assert not health.usable(11.0)
    assert health.record("broken", True, 12.0) == "out"
    assert health.until == 32.0  # twice as long
    assert health.sent()
    assert health.record("overloaded", True, 33.0) is None  # says nothing: probe again
    assert health.usable(33.0) and health.sent()
    assert health.record("broken", True, 34.0) == "out"
    assert health.until == 59.0  # capped at 25 s
    assert health.sent()
    assert health.record("answered", True, 60.0) == "back"
    assert health.usable(60.0) and not health.sent()
    for _ in range(2):
        health.record("broken", False, 61.0)
    assert health.record("broken", False, 61.0) == "out"
    assert health.until == 71.0  # an answer reset the cool-down too


def test_a_lone_server_is_never_taken_out() -> None:
    health = CoolDown(None, 10.0, 40.0)
    assert all(health.record("broken", False, 0.0) is None for _ in range(10))
    assert health.usable(0.0)


@pytest.mark.parametrize(
    "fields",
    [{"cooldown_after_failures": 0}, {"cooldown_s": 0}, {"cooldown_s": 10, "max_cooldown_s": 5}],
)
def test_cool_down_settings_are_checked(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="cooldown"):
        ModelSpec(path="srv", backend="openai", base_urls=["http://a/v1"], **fields)


def test_with_every_server_out_an_attempt_waits_for_the_first_back_within_its_deadline() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        fleet = Fleet([server(until=now + 0.3), server(until=now + 0.2)], deadline_s=1.0)
        with pytest.raises(ServersCoolingDown, match="all 2 servers are taken out"):
            await fleet.acquire(None, now + 0.15)  # a retry's deadline
        assert loop.time() - now < 0.1  # at once: no server is back in time
        ticket = await fleet.acquire(None, None)  # a first attempt
        assert 0.2 <= loop.time() - now < 0.3
        assert ticket.server is fleet.servers[1] and ticket.probe

    asyncio.run(main())


def test_load_goes_mostly_to_the_faster_server(serve: Callable[..., FaultServer]) -> None:
    slow, fast = serve(answer_delay_s=0.5), serve(answer_delay_s=0.01)
    prompts = [f"request {i}" for i in range(60)]
    results = generate(prompts, slow.url, fast.url, max_concurrency=4)
    assert [r.text for r in results] == [f"echo: {p}" for p in prompts]
    assert len(slow.hits) + len(fast.hits) == len(prompts)
    assert len(slow.hits) >= 1 and 3 * len(slow.hits) <= len(fast.hits)


def test_a_failing_server_is_taken_out_probed_and_put_back(
    serve: Callable[..., FaultServer], caplog: pytest.LogCaptureFixture
) -> None:
    """One attempt at a time per server: 3 failures take the broken one out for 0.4 s (no
    hit then), its probe fails (0.8 s more), it is repaired, the next probe is answered and
    it takes its share again."""
    broken, good = serve(down="500"), serve(answer_delay_s=0.05)

    def repair_after_the_first_probe() -> None:
        while len(broken.hits) < 4:
            time.sleep(0.01)
        broken.down = None

    repair = threading.Thread(target=repair_after_the_first_probe, daemon=True)
    repair.start()
    prompts = [f"request {i}" for i in range(50)]
    with caplog.at_level(logging.INFO, logger="prefgen_dagster.llm.engines.fleet"):
        results = generate(
            prompts,
            broken.url,
            good.url,
            max_concurrency=1,
            cooldown_after_failures=3,
            cooldown_s=0.4,
            max_cooldown_s=0.8,
        )
    repair.join(timeout=1)
    assert [r.text for r in results] == [f"echo: {p}" for p in prompts]
    faults = [hit.fault for hit in broken.hits]
    assert faults[:5] == ["500", "500", "500", "500", None]
    gaps = [later.at - earlier.at for earlier, later in pairwise(broken.hits[2:5])]
    assert gaps[0] >= 0.4 and gaps[1] >= 0.8
    assert len(broken.answered) > 1  # in service again after its probe
    messages = [record.getMessage() for record in caplog.records]
    assert sum("taken out for 0.4 s: failed attempts in a row" in m for m in messages) == 1
    assert sum("taken out for 0.8 s: its probe failed" in m for m in messages) == 1
    assert sum(f"{broken.url} is back in service" in m for m in messages) == 1


def test_with_every_server_down_requests_fail_within_the_deadline_with_the_reason(
    serve: Callable[..., FaultServer],
) -> None:
    first, second = serve(down="500"), serve(down="500")
    prompts = [f"request {i}" for i in range(10)]
    began = time.monotonic()
    results = generate(
        prompts,
        first.url,
        second.url,
        max_retries=10,
        deadline_s=1.5,
        cooldown_after_failures=2,
        cooldown_s=0.3,
        max_cooldown_s=1.0,
    )
    assert time.monotonic() - began < 1.5 + 0.5
    assert len(results) == len(prompts)
    assert all(r.text is None and r.error for r in results)
    cooling = [r.error for r in results if r.error.startswith("ServersCoolingDown: ")]
    assert cooling and all("last error: InternalServerError" in e for e in cooling)
    # The cool-down spares the servers: first attempts and a few probes, not 11 per request.
    assert len(first.hits) + len(second.hits) <= 2 * len(prompts)
