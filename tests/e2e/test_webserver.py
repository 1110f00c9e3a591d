"""`dagster-webserver -w workspace.yaml` loads the code location; ask its GraphQL API."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefgen_dagster.sql_layer import load_checks
from tests.conftest import CLEAN_ENV

from .conftest import write_config
from .servers import dagster_webserver, graphql

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


@pytest.mark.slow
def test_webserver_serves_asset_graph_and_checks(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, tmp_path / "models")
    env = {**CLEAN_ENV, "PREFGEN_CONFIG": str(config_path), "DAGSTER_HOME": str(tmp_path)}
    with dagster_webserver(env, tmp_path / "webserver.log") as url:
        data = graphql(url, QUERY)

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
    assert set(checks) == {check.name for check in load_checks()}
    assert checks["pair_integrity"]["blocking"] and not checks["low_margin_pairs"]["blocking"]
    assert checks["pair_integrity"]["description"].startswith("[ERROR, blocking]")
    assert checks["low_margin_pairs"]["description"].startswith("[WARN, filters pairs]")
    [repository] = data["repositoriesOrError"]["nodes"]
    assert "inbox_sensor" in {s["name"] for s in repository["sensors"]}
    assert [s["name"] for s in repository["schedules"]] == ["catch_up_schedule"]
