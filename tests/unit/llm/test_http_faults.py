"""The OpenAI-compatible engine against a real HTTP server on 127.0.0.1 that injects faults.

Each request's content scripts its fault (see `fault_server`); the engine is built by
`open_engine` from the config, and `run_requests` writes to a real DuckDB file, so these
tests cover the retries, the `failed_calls` table, the counts and the rerun together.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.config.base import SamplingParams
from prefgen_dagster.llm.engines import pacing
from prefgen_dagster.llm.pool import EnginePool
from prefgen_dagster.llm.runner import run_requests
from prefgen_dagster.llm.types import LLMRequest
from prefgen_dagster.storage.store import Storage
from tests.unit.llm.fault_server import FaultServer

TIMEOUT_S = 0.5  # the client's timeout; a hanging server answers after 3 s
DEADLINE_S = 2.0  # everything one request may take

# fault -> (error kind once retries run out, attempts made by then with max_retries=1; None:
# an overload reply, retried without using up a retry until the deadline)
FAULTS: dict[str, tuple[str, int | None]] = {
    "429": ("RateLimitError", None),
    "500": ("InternalServerError", 2),
    "503": ("InternalServerError", None),
    "hang": ("APITimeoutError", 2),
    "drop": ("APIConnectionError", 2),
    "badjson": ("MalformedResponse", 2),
    "nochoices": ("MalformedResponse", 2),
    "400": ("BadRequestError", 1),  # a client error: retrying cannot help
    "trickle": ("DeadlineExceeded", 1),  # the first attempt runs into the request's deadline
}
RECOVERABLE = [fault for fault, (_, attempts) in FAULTS.items() if attempts != 1]


def http_config(config: PipelineConfig, *urls: str, max_retries: int) -> PipelineConfig:
    """The test config plus a model `srv` served over HTTP at `urls`."""
    raw = config.model_dump(mode="json")
    raw["models"]["srv"] = {
        "path": "srv",
        "backend": "openai",
        "base_urls": list(urls),
        "max_retries": max_retries,
        "timeout_s": TIMEOUT_S,
        "deadline_s": DEADLINE_S,
    }
    return PipelineConfig.model_validate(raw)


def req(prompt: str) -> LLMRequest:
    return LLMRequest("srv", [{"role": "user", "content": prompt}], SamplingParams(), seed=1)


def ask(
    prompts: list[str], storage: Storage, config: PipelineConfig
) -> tuple[dict[str, dict[str, Any]], Any]:
    with EnginePool() as engines:
        return run_requests([("srv", req(p)) for p in prompts], storage, config, engines)


def failed_calls(storage: Storage) -> list[dict[str, Any]]:
    return storage.query("SELECT call_id, model, error, attempts FROM failed_calls").to_dicts()


def cached_responses(storage: Storage) -> set[str]:
    return set(storage.query("SELECT response FROM llm_calls")["response"])


@pytest.mark.parametrize("fault", RECOVERABLE)
def test_a_passing_fault_is_retried_until_it_succeeds(
    fault: str, serve: Callable[..., FaultServer], storage: Storage, config: PipelineConfig
) -> None:
    server = serve()
    flaky = f"{fault}x2 then fine"
    answers, stats = ask([flaky, "plain"], storage, http_config(config, server.url, max_retries=2))
    assert server.attempts(flaky) == 3
    assert server.attempts("plain") == 1
    assert answers[req(flaky).call_id]["response"] == f"echo: {flaky}"
    assert answers[req(flaky).call_id]["completion_tokens"] == 3
    assert failed_calls(storage) == []


def test_rate_limit_waits_as_long_as_retry_after_asks(
    serve: Callable[..., FaultServer], storage: Storage, config: PipelineConfig
) -> None:
    server = serve(retry_after="0.3")  # longer than any backoff (capped at 0.2 s here)
    ask(["429x2 slow down"], storage, http_config(config, server.url, max_retries=2))
    times = server.times("429x2 slow down")
    assert len(times) == 3
    assert all(later - earlier >= 0.3 for earlier, later in pairwise(times))


def test_a_retry_after_past_the_deadline_is_not_waited_for(
    serve: Callable[..., FaultServer], storage: Storage, config: PipelineConfig
) -> None:
    server = serve(retry_after="60")
    began = time.monotonic()
    _, stats = ask(
        ["429x9 come back later"], storage, http_config(config, server.url, max_retries=3)
    )
    assert time.monotonic() - began < 1.0
    assert stats.failed_by_kind == {"RateLimitError": 1}
    assert server.attempts("429x9 come back later") == 1


@pytest.mark.parametrize("fault", FAULTS)
def test_a_lasting_fault_fails_its_request_and_a_rerun_asks_only_it(
    fault: str, serve: Callable[..., FaultServer], storage: Storage, config: PipelineConfig
) -> None:
    kind, attempts = FAULTS[fault]
    server = serve()
    broken = f"{fault}x99 not fine"
    prompts = ["first", broken, "last"]
    config = http_config(config, server.url, max_retries=1)
    began = time.monotonic()
    answers, stats = ask(prompts, storage, config)
    assert time.monotonic() - began < DEADLINE_S + 1.5
    assert (stats.failed, stats.failed_by_kind) == (1, {kind: 1})
    assert answers[req(broken).call_id]["error"].startswith(f"{kind}: ")
    if attempts is None:  # overload: retried past max_retries, until the deadline
        assert server.attempts(broken) > 2
    else:
        assert server.attempts(broken) == attempts
    assert cached_responses(storage) == {"echo: first", "echo: last"}
    [row] = failed_calls(storage)
    assert row["call_id"] == req(broken).call_id
    assert row["model"] == "srv"
    assert row["error"].startswith(f"{kind}: ")
    assert row["attempts"] == server.attempts(broken)

    server.healthy = True
    seen = len(server.hits)
    answers, stats = ask(prompts, storage, config)
    assert [hit.content for hit in server.hits[seen:]] == [broken]
    assert (stats.cache_hits, stats.engine_calls, stats.failed) == (2, 1, 0)
    assert [answers[req(p).call_id]["response"] for p in prompts] == [f"echo: {p}" for p in prompts]
    assert failed_calls(storage) == []


def test_failures_are_counted_by_kind(
    serve: Callable[..., FaultServer], storage: Storage, config: PipelineConfig
) -> None:
    server = serve()
    prompts = ["500x9 a", "500x9 b", "hangx9 c", "fine", "badjsonx9 d"]
    answers, stats = ask(prompts, storage, http_config(config, server.url, max_retries=0))
    assert stats.failed == 4
    assert stats.failed_by_kind == {
        "InternalServerError": 2,
        "APITimeoutError": 1,
        "MalformedResponse": 1,
    }
    failed = {row["call_id"] for row in failed_calls(storage)}
    assert failed == {req(p).call_id for p in prompts if p != "fine"}
    assert failed == {call_id for call_id, row in answers.items() if "error" in row}
    assert cached_responses(storage) == {"echo: fine"}


def test_a_retry_goes_to_the_next_base_url(
    serve: Callable[..., FaultServer], storage: Storage, config: PipelineConfig
) -> None:
    down, up = serve(down="503"), serve()
    prompts = ["one", "two", "three", "four"]
    answers, _ = ask(prompts, storage, http_config(config, down.url, up.url, max_retries=1))
    assert len(answers) == 4
    # The runner sends them sorted by text (four, one, three, two); with both servers equally
    # loaded the first attempts alternate, and each retry goes to the other server.
    assert sorted(hit.content for hit in down.hits) == ["four", "three"]
    assert sorted(hit.content for hit in up.hits) == sorted(prompts)
    assert failed_calls(storage) == []


def test_a_server_that_takes_four_at_a_time_is_not_flooded(
    serve: Callable[..., FaultServer], storage: Storage, config: PipelineConfig
) -> None:
    """The default 16 concurrent requests against a server that answers 503 + Retry-After
    above 4: the engine backs off to what the server takes, nothing fails, and the attempts
    stay close to the requests."""
    server = serve(max_in_flight=4, answer_delay_s=0.05, retry_after="0.5")
    raw = http_config(config, server.url, max_retries=4).model_dump(mode="json")
    del raw["models"]["srv"]["timeout_s"], raw["models"]["srv"]["deadline_s"]  # defaults
    prompts = [f"request {i}" for i in range(150)]
    answers, stats = ask(prompts, storage, PipelineConfig.model_validate(raw))
    assert stats.failed == 0
    assert all(answers[req(p).call_id]["response"] == f"echo: {p}" for p in prompts)
    assert len(server.hits) <= 1.3 * len(prompts)


def test_a_stalled_request_is_left_after_seconds_and_asked_again(
    serve: Callable[..., FaultServer], storage: Storage, config: PipelineConfig
) -> None:
    """With the default timeouts, a server that stalls 30 s on 1 request in 10 costs the run
    a few seconds: once answers have shown the server's pace, a stalled attempt is given up
    at STALL_MIN_S (5 s) and asked again."""
    server = serve(hang_s=30.0, answer_delay_s=0.02)
    raw = http_config(config, server.url, max_retries=4).model_dump(mode="json")
    del raw["models"]["srv"]["timeout_s"], raw["models"]["srv"]["deadline_s"]  # defaults
    prompts = [f"hangx1 stall {i}" if i % 10 == 5 else f"request {i}" for i in range(60)]
    began = time.monotonic()
    answers, stats = ask(prompts, storage, PipelineConfig.model_validate(raw))
    elapsed = time.monotonic() - began
    assert stats.failed == 0
    assert all(answers[req(p).call_id]["response"] == f"echo: {p}" for p in prompts)
    assert elapsed < pacing.STALL_MIN_S + 3.0  # not the 30 s stall, nor the 60 s timeout_s
    assert all(server.attempts(p) == 2 for p in prompts if p.startswith("hang"))
