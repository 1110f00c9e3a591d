"""A real Ray cluster on 127.0.0.1 for tests: a head node and one worker node, each a
`ray start` of its own (separate raylets, object stores and worker processes), stopped at
the end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

from tests.conftest import CLEAN_ENV

from .servers import free_port

START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 10


@contextmanager
def ray_cluster(worker_cpus: int = 2) -> Iterator[str]:
    """Yields the head's address (host:port). Actors land on either node; the head offers
    one CPU, the worker node `worker_cpus`."""
    ray = str(Path(sys.executable).parent / "ray")
    # Ray's socket paths must stay short (under 108 bytes): not under pytest's tmp_path.
    temp_dir = tempfile.mkdtemp(prefix="prefgen-ray-", dir="/tmp")
    port = free_port()
    address = f"127.0.0.1:{port}"
    # Token authentication off, said explicitly: a process reads Ray's auth settings once,
    # when it first loads Ray (here often long before this cluster exists, through vLLM), so
    # a token given to this test process now would not be sent; and with the mode unset, a
    # token left in ~/.ray/auth_token by an earlier local `ray.init()` is picked up by one
    # node and not the other. Ray's servers listen beyond 127.0.0.1 (Ray 2.60 has no option
    # against it); the cluster lives for this module's tests only.
    auth = {"RAY_AUTH_MODE": "disabled"}
    env = {**CLEAN_ENV, **auth, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    common = ["--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    head = [ray, "start", "--head", "--port", str(port), "--num-cpus", "1",
            "--ray-client-server-port", str(free_port()), "--include-dashboard", "false",
            "--temp-dir", temp_dir, *common]  # fmt: skip
    worker = [ray, "start", "--address", address, "--num-cpus", str(worker_cpus), *common]
    saved = {name: os.environ.get(name) for name in auth}
    os.environ.update(auth)
    try:
        for command in (head, worker):
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=START_TIMEOUT_S
            )
            if done.returncode:
                raise RuntimeError(f"{' '.join(command[1:4])} failed:\n{done.stderr[-3000:]}")
        yield address
    finally:
        _disconnect()
        _stop(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _disconnect() -> None:
    """The test process joined the cluster as a driver: leave it before the cluster stops."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def _stop(temp_dir: str) -> None:
    """Stop this cluster's processes only (`ray stop` would stop every Ray on the machine):
    those started with its session folder, and the workers they started."""
    own = {os.getpid(), *(parent.pid for parent in psutil.Process().parents())}
    roots = [
        process
        for process in psutil.process_iter(["cmdline"])
        if process.pid not in own and any(temp_dir in arg for arg in process.info["cmdline"] or [])
    ]
    processes = {process.pid: process for process in roots}
    for root in roots:
        with suppress(psutil.NoSuchProcess):
            processes.update({child.pid: child for child in root.children(recursive=True)})
    for process in processes.values():
        with suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(list(processes.values()), timeout=STOP_TIMEOUT_S)
    for process in alive:
        process.kill()
