"""The review server (Label Studio, started by scripts/review-server.sh) on a free port of
127.0.0.1 for tests, with a small client for its REST API."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import psutil

from tests.conftest import CLEAN_ENV

from .servers import _stop, free_port

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "review-server.sh"
INSTALL_TIMEOUT_S = 900  # building .venv-review: pip (~2 min) and the migrations (1-2 min)
READY_TIMEOUT_S = 120


class ReviewServer(NamedTuple):
    base_url: str
    token: str

    def call(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> Any:
        """One REST call with the server's token (or `token`); the decoded JSON answer. An
        HTTP error is raised with the server's own explanation in its message."""
        request = urllib.request.Request(
            self.base_url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Token {self.token if token is None else token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            error.msg = f"{error.msg}: {error.read().decode(errors='replace')[:500]}"
            raise
        return json.loads(payload) if payload else None


def script_env(**settings: str) -> dict[str, str]:
    """The tests' environment for the script, without the caller's review settings (except
    PREFGEN_REVIEW_VENV, so that a developer's venv is used), plus `settings`."""
    env = {
        key: value
        for key, value in CLEAN_ENV.items()
        if not key.startswith("PREFGEN_REVIEW_") or key == "PREFGEN_REVIEW_VENV"
    }
    return {**env, **settings}


def install() -> None:
    """Build the server's venv now (nothing to do when it matches the lock), so that the
    start is timed on its own."""
    subprocess.run(
        ["bash", str(SCRIPT), "--install"], check=True, env=script_env(), timeout=INSTALL_TIMEOUT_S
    )


@contextmanager
def review_server(data_dir: Path, log: Path, **settings: str) -> Iterator[ReviewServer]:
    """Start the server with its data in `data_dir` and its output in `log`; yield its base URL
    and API token (from `data_dir`/credentials) once /health answers, after checking that it
    listens on 127.0.0.1 only. Afterwards stop its whole process group and check that nothing
    of it is left, listening or not. `settings`: PREFGEN_REVIEW_* variables for the script."""
    install()
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["bash", str(SCRIPT), str(data_dir), str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=script_env(**settings),
            start_new_session=True,
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        _wait_healthy(base_url, process, log)
        addresses = _listening(process)
        assert addresses and all(ip == "127.0.0.1" for ip, _ in addresses), addresses
        assert ("127.0.0.1", port) in addresses, addresses
        yield ReviewServer(base_url, _credentials(data_dir)["token"])
    finally:
        _stop(process)
    assert not _group_alive(process.pid), "a process of the review server outlived the test"
    ports = {c.laddr.port for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN}
    assert port not in ports, f"port {port} still listens after the server stopped"


def _credentials(data_dir: Path) -> dict[str, str]:
    lines = (data_dir / "credentials").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def _wait_healthy(base_url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"review server exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(
        f"review server not ready in {READY_TIMEOUT_S} s:\n{log.read_text()[-3000:]}"
    )


def _listening(process: subprocess.Popen) -> set[tuple[str, int]]:
    """Every address that the server's processes listen on (TCP, IPv4 and IPv6)."""
    root = psutil.Process(process.pid)
    return {
        (connection.laddr.ip, connection.laddr.port)
        for member in (root, *root.children(recursive=True))
        for connection in member.net_connections("inet")
        if connection.status == psutil.CONN_LISTEN
    }


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
