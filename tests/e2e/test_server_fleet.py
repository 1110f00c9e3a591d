"""Two real OpenAI-compatible vLLM servers for one model: a stage's work goes to both, and
stopping one mid-stage loses nothing.

What each server did is counted by the server itself: vLLM's Prometheus endpoint
(`/metrics`, `vllm:request_success_total`) and its access log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from prefgen_dagster.config.base import ModelSpec, SamplingParams
from prefgen_dagster.defs.pipeline_run import materialize_batch
from prefgen_dagster.llm.engines.openai_http import OpenAIHTTPEngine
from prefgen_dagster.llm.types import LLMRequest

from .conftest import drop_batch, write_config
from .servers import vllm_servers
from .test_pipeline_vllm import LLM_ASSETS, engine_calls, mt_bench_lines

SERVED = "tiny-qwen2"
ANSWERED = '"POST /v1/chat/completions HTTP/1.1" 200'


@pytest.fixture
def servers(workdir: Path, tiny_models: Path) -> Iterator[list[tuple[str, subprocess.Popen]]]:
    """Both servers, each asked once first: a cold server's first answer is much slower than
    the rest, which would skew the share the fleet gives each (the tests count from there)."""
    logs = [workdir / "server-a.log", workdir / "server-b.log"]
    with vllm_servers(tiny_models / SERVED, SERVED, logs) as started:
        for url, _ in started:
            ask_once(url)
        yield started


def ask_once(base_url: str) -> None:
    body = {"model": SERVED, "messages": [{"role": "user", "content": "Hi."}], "max_tokens": 4}
    request = urllib.request.Request(
        f"{base_url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


def requests_served(base_url: str) -> int:
    """Requests the server finished, from its Prometheus metrics."""
    root = base_url.removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return round(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in lines
            if line.startswith("vllm:request_success_total{")
        )
    )


@pytest.mark.slow
def test_a_pipeline_run_shares_its_stages_between_both_servers(
    workdir: Path, tiny_models: Path, servers: list[tuple[str, subprocess.Popen]]
) -> None:
    urls = [url for url, _ in servers]
    model = {"path": SERVED, "backend": "openai", "base_urls": urls, "max_retries": 2}
    sampling = {"temperature": 1.0, "top_p": 0.95, "max_tokens": 16}
    config_path = write_config(
        workdir,
        tiny_models,
        models={"fleet": model},
        generation={
            "seed": 3,
            "pool": [
                {"model": "fleet", "sampling": sampling},
                {"model": "fleet", "system_prompt": "Answer briefly.", "sampling": sampling},
            ],
        },
        evol_quality={"model": "fleet", "sampling": sampling},
        judge={"model": "fleet", "rationale_max_chars": 40},
    )
    drop_batch(workdir, "fleet.jsonl", mt_bench_lines(3))
    before = [requests_served(url) for url in urls]
    with dg.instance_for_test() as instance:
        batch, _ = materialize_batch(config_path, "fleet.jsonl", instance)
        assert batch.success
        calls = sum(engine_calls(batch, asset) for asset in LLM_ASSETS)
    served = [requests_served(url) - start for url, start in zip(urls, before, strict=True)]
    assert calls >= 6 + 6 + 3  # 3 instructions x 2 members, as many rewrites, the judge
    assert sum(served) == calls
    assert min(served) >= calls // 4, served  # both took a real share


@pytest.mark.slow
def test_stopping_one_server_mid_stage_loses_no_request(
    workdir: Path, servers: list[tuple[str, subprocess.Popen]]
) -> None:
    """120 requests, 4 at a time per server; once the first server has answered 3 of them, it
    is stopped (SIGTERM to its process group) and the other answers everything left. What its
    requests in flight get varies: an answer, a 500, or nothing on a connection left open
    while it shuts down (uvicorn waits for them), given up after `timeout_s` (or sooner as
    stalled once the server has answered 8; the short `timeout_s` keeps the test short).
    New connections to it are refused, and it is taken out when 3 attempts in a row failed
    (when that happens depends on the timing, so the unit tests check it). The stop waits
    on the server's own count only, so the stage cannot end first unless the stopped server
    lags far behind the other (both were asked once before, so neither is cold)."""
    (stopped_url, stopped), (kept_url, _) = servers
    spec = ModelSpec(
        path=SERVED,
        backend="openai",
        base_urls=[stopped_url, kept_url],
        max_concurrency=4,
        timeout_s=10,
    )
    sampling = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=16)
    requests = [
        LLMRequest(SERVED, [{"role": "user", "content": f"Say something about {n}."}], sampling, n)
        for n in range(120)
    ]
    before = {url: requests_served(url) for url in (stopped_url, kept_url)}
    logged_before = (workdir / "server-a.log").read_text().count(ANSWERED)
    arrived: list[int] = []
    at_stop: dict[str, int] = {}

    def stop_the_first() -> None:
        deadline = time.monotonic() + 120
        while (served := requests_served(stopped_url) - before[stopped_url]) < 3:
            if time.monotonic() > deadline:
                break  # the asserts below say so
            time.sleep(0.05)
        at_stop["served"], at_stop["arrived"] = served, len(arrived)
        os.killpg(stopped.pid, signal.SIGTERM)

    stopper = threading.Thread(target=stop_the_first, daemon=True)
    stopper.start()
    results = OpenAIHTTPEngine(spec).generate(requests, lambda index, _: arrived.append(index))
    stopper.join(timeout=30)
    stopped.wait(timeout=30)

    answered = [r for r in results if r.error is None and r.text is not None]
    failed = [r for r in results if r.error is not None]
    assert (len(answered), len(failed)) == (len(requests), 0)
    assert sorted(arrived) == list(range(len(requests)))  # each handed on once
    assert at_stop["served"] >= 3 and at_stop["arrived"] < len(requests), at_stop  # mid-stage
    assert any(r.extra["attempts"] > 1 for r in results)  # some were asked again
    # The stopped server's access log counts its answers to the end; the other did the rest.
    by_stopped = (workdir / "server-a.log").read_text().count(ANSWERED) - logged_before
    assert by_stopped >= at_stop["served"]
    assert requests_served(kept_url) - before[kept_url] >= len(requests) - by_stopped
