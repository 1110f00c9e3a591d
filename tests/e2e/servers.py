"""Servers on 127.0.0.1 for tests: vLLM's OpenAI-compatible server and the Dagster UI (real),
and a scripted judge that rates by position (for the label gates to catch)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.conftest import CLEAN_ENV

READY_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def vllm_server(model_dir: Path, served_name: str, log: Path) -> Iterator[str]:
    """Yields the server's base URL (…/v1) once it answers; stops it afterwards."""
    with vllm_servers(model_dir, served_name, [log]) as [(base_url, _)]:
        yield base_url


@contextmanager
def vllm_servers(
    model_dir: Path, served_name: str, logs: list[Path]
) -> Iterator[list[tuple[str, subprocess.Popen]]]:
    """One server per log file, all for the same model, started together. Yields each one's
    base URL (…/v1) and process once all answer, so that a test may stop one itself (SIGTERM
    to its process group); those still running are stopped afterwards."""
    started: list[tuple[str, subprocess.Popen]] = []
    try:
        for log in logs:
            started.append(_start_vllm(model_dir, served_name, log))
        for (base_url, process), log in zip(started, logs, strict=True):
            _wait_ready(base_url, process, log)
        yield started
    finally:
        for _, process in started:
            _stop(process)


def _start_vllm(model_dir: Path, served_name: str, log: Path) -> tuple[str, subprocess.Popen]:
    port = free_port()
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir), "--served-model-name", served_name,
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--enforce-eager", "--max-model-len", "4096", "--seed", "0",
        "--kv-cache-memory-bytes", str(64 * 2**20), "--no-enable-chunked-prefill",
        "--structured-outputs-config", '{"backend": "guidance", "disable_any_whitespace": true}',
    ]  # fmt: skip
    env = {**CLEAN_ENV, "HF_HUB_OFFLINE": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return f"http://127.0.0.1:{port}/v1", process


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group; SIGKILL if it is still there after 30 s. A group
    that a test stopped already is left as it is."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_ready(base_url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vLLM server exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"vLLM server not ready in {READY_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@contextmanager
def dagster_webserver(
    env: dict[str, str], log: Path, *, with_daemon: bool = False
) -> Iterator[str]:
    """`dagster-webserver -w workspace.yaml` (or `dagster dev`, which adds the daemon that
    ticks sensors, schedules and automation) from the repository root; yields the GraphQL URL
    once the code location has loaded its assets."""
    port = free_port()
    repo = Path(__file__).resolve().parents[2]
    program = ["dagster", "dev"] if with_daemon else ["dagster_webserver"]
    command = [sys.executable, "-m", *program, "-w", "workspace.yaml",
               "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _has_assets(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"webserver did not load:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        _stop(process)


def graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    if body.get("errors"):
        raise AssertionError(body["errors"])
    return body["data"]


def _has_assets(url: str) -> bool:
    try:
        return bool(graphql(url, "{ assetNodes { id } }")["assetNodes"])
    except (OSError, AssertionError, KeyError):
        return False


def position_answer(schema: dict) -> dict:
    """What a judge that only looks at positions says, in the shape the JSON schema asks for:
    listwise, the first text 1 and the last 5; pairwise, always B; pointwise, always 3."""
    properties = schema.get("properties", {})
    if "ratings" in properties:
        count = properties["ratings"]["minItems"]
        ratings = [1 + round(4 * p / (count - 1)) if count > 1 else 3 for p in range(count)]
        return {"ratings": [{"rating": r, "rationale": f"position {r}"} for r in ratings]}
    if "better" in properties:
        return {"better": "B", "rationale": "the second one"}
    return {"rating": 3, "rationale": "middling"}


@contextmanager
def position_judge_server() -> Iterator[str]:
    """A scripted OpenAI-compatible judge on 127.0.0.1 that rates by position, never by
    content (a stand-in for a broken judge: it must be caught by the label gates). Yields
    its base URL (…/v1)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            schema = body["response_format"]["json_schema"]["schema"]
            answer = {
                "id": "chatcmpl-position-judge",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": json.dumps(position_answer(schema)),
                        },
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
            }
            payload = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
