"""A real Ray cluster on 127.0.0.1 for tests: a head node and one worker node (separate
raylets, object stores and worker processes, started with Ray's own `Cluster` test harness),
every server bound to 127.0.0.1 and stopped at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import psutil

from tests.conftest import CLEAN_ENV

STOP_TIMEOUT_S = 10
# Token authentication off, said explicitly: a process reads Ray's auth settings once, when
# it first loads Ray (here often long before this cluster exists, through vLLM), so a token
# given to this test process now would not be sent; and with the mode unset, a token left in
# ~/.ray/auth_token by an earlier local `ray.init()` is picked up by one node and not the
# other.
NODE_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}


@contextmanager
def ray_cluster(worker_cpus: int = 2) -> Iterator[str]:
    """Yields the head's address (127.0.0.1:port). Actors land on either node; the head
    offers one CPU, the worker node `worker_cpus`.

    Why not two `ray start` commands: `ray start` turns `--node-ip-address 127.0.0.1` into
    the machine's own address (so that other machines could join), and its servers then
    listen on every interface. Nodes started here keep 127.0.0.1, and Ray binds its servers
    to it. `ray.init` makes the same swap for the driver's address unless Ray believes that
    multi-node clusters are off (its rule on macOS and Windows): that switch is off for as
    long as the cluster lives.
    """
    import ray._private.ray_constants as ray_constants
    from ray.cluster_utils import Cluster

    # Ray's socket paths must stay short (under 108 bytes): not under pytest's tmp_path.
    temp_dir = tempfile.mkdtemp(prefix="prefgen-ray-", dir="/tmp")
    # The harness also writes the head's address to $RAY_TMPDIR/ray/ray_current_cluster (by
    # default /tmp/ray, which only a default-started node makes): keep that here too.
    os.mkdir(os.path.join(temp_dir, "ray"))
    node = {"node_ip_address": "127.0.0.1", "temp_dir": temp_dir}
    test_env = dict(os.environ)
    multi_node = ray_constants.ENABLE_RAY_CLUSTER
    cluster = None
    try:
        # The nodes inherit this process's environment when they start: the one from before
        # any engine ran here (see CLEAN_ENV), with Ray's settings.
        os.environ.clear()
        os.environ.update({**CLEAN_ENV, **NODE_ENV, "RAY_TMPDIR": temp_dir})
        cluster = Cluster()
        cluster.add_node(num_cpus=1, include_dashboard=False, **node)
        cluster.add_node(num_cpus=worker_cpus, **node)
        os.environ.clear()
        os.environ.update({**test_env, "RAY_AUTH_MODE": "disabled"})
        ray_constants.ENABLE_RAY_CLUSTER = False
        yield cluster.address
    finally:
        _disconnect()
        if cluster is not None:
            cluster.shutdown()
        _stop(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        ray_constants.ENABLE_RAY_CLUSTER = multi_node
        os.environ.clear()
        os.environ.update(test_env)


def _disconnect() -> None:
    """The test process joined the cluster as a driver: leave it before the cluster stops."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def _stop(temp_dir: str) -> None:
    """Whatever of this cluster is still running after `Cluster.shutdown` (processes started
    with its session folder, and theirs); other Ray instances on the machine are left be."""
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
