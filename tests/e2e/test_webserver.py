"""`dagster-webserver -w workspace.yaml` loads the code location; ask its GraphQL API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import CLEAN_ENV

from .conftest import write_config
from .vllm_server import free_port

REPO = Path(__file__).resolve().parents[2]
QUERY = """
{
  assetNodes {
    assetKey { path }
    isPartitioned
    dependencyKeys { path }
    assetChecksOrError {
      ... on AssetChecks { checks { name blocking description } }
    }
  }
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes { sensors { name } schedules { name cronSchedule } }
    }
  }
}
"""


def graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_webserver_serves_asset_graph_and_checks(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, tmp_path / "models")
    port = free_port()
    env = {
        **CLEAN_ENV,
        "PREFGEN_CONFIG": str(config_path),
        "DAGSTER_HOME": str(tmp_path),
    }
    log = (tmp_path / "webserver.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp_path / "webserver.log").read_text()[-3000:]
            try:
                data = graphql(url, QUERY)["data"]
                if data["assetNodes"]:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "webserver did not load the code location"
            time.sleep(1)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()

    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert set(nodes) == {
        "raw_instructions",
        "pooled_completions",
        "evolved_completions",
        "ratings",
        "dpo_pairs",
        "preference_dataset",
    }
    assert nodes["dpo_pairs"]["isPartitioned"] and not nodes["preference_dataset"]["isPartitioned"]
    # A SQL model's dependencies are read off its refs.
    assert {k["path"][0] for k in nodes["dpo_pairs"]["dependencyKeys"]} == {
        "pooled_completions",
        "evolved_completions",
        "ratings",
    }
    checks = {
        c["name"]: c for n in nodes.values() for c in n["assetChecksOrError"].get("checks", [])
    }
    assert set(checks) == {
        "low_margin_pairs",
        "length_outliers",
        "judge_parse_failures",
        "pair_integrity",
    }
    assert checks["pair_integrity"]["blocking"] and not checks["low_margin_pairs"]["blocking"]
    assert checks["pair_integrity"]["description"].startswith("[ERROR, blocking]")
    assert checks["low_margin_pairs"]["description"].startswith("[WARN, filters pairs]")
    [repository] = data["repositoriesOrError"]["nodes"]
    assert "inbox_sensor" in {s["name"] for s in repository["sensors"]}
    assert [s["name"] for s in repository["schedules"]] == ["catch_up_schedule"]
