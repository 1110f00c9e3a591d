"""`dagster-webserver -w workspace.yaml` loads the code location; ask its GraphQL API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from prefgen_dagster.config import load_config
from prefgen_dagster.defs.assets import LATER_PROMPTS_FIT
from prefgen_dagster.defs.graph import build_graph
from prefgen_dagster.defs.resources import run_resources
from prefgen_dagster.sql.project import load_project
from tests.conftest import CLEAN_ENV

from .conftest import drop_batch, write_config
from .servers import dagster_webserver, graphql
from .test_pipeline_vllm import mt_bench_lines

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
      nodes {
        sensors { name sensorState { status } }
        schedules { name cronSchedule scheduleState { status } }
      }
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
        "instructions",
        "completions",
        "evolved_completions",
        "candidates",
        "ratings",
        "judge_scores",
        "human_verdicts",
        "candidate_pairs",
        "human_agreement",
        "dpo_pairs",
        "preference_dataset",
    }
    assert nodes["dpo_pairs"]["isPartitioned"] and not nodes["preference_dataset"]["isPartitioned"]
    # A SQL model's dependencies are read off its refs.
    assert {k["path"][0] for k in nodes["candidate_pairs"]["dependencyKeys"]} == {
        "candidates",
        "human_verdicts",
        "judge_scores",
    }
    # (and a ref in a comment: dpo_pairs' `-- depends_on:` human_agreement)
    assert {k["path"][0] for k in nodes["dpo_pairs"]["dependencyKeys"]} == {
        "candidate_pairs",
        "human_agreement",
    }
    checks = {
        c["name"]: c for n in nodes.values() for c in n["assetChecksOrError"].get("checks", [])
    }
    assert set(checks) == {check.name for check in load_project().checks} | {LATER_PROMPTS_FIT}
    assert checks["pair_integrity"]["blocking"] and not checks["length_bias"]["blocking"]
    assert checks[LATER_PROMPTS_FIT]["description"].startswith("[WARN] ")
    assert checks["pair_integrity"]["description"].startswith("[ERROR, blocking]")
    assert checks["length_bias"]["description"].startswith("[WARN] ")
    [repository] = data["repositoriesOrError"]["nodes"]
    # On from the start: new batches flow without anyone switching anything on.
    assert {s["name"]: s["sensorState"]["status"] for s in repository["sensors"]} == {
        "inbox_sensor": "RUNNING",
        "prefgen_automation": "RUNNING",
        "review_sensor": "RUNNING",
    }
    [schedule] = repository["schedules"]
    assert (schedule["name"], schedule["scheduleState"]["status"]) == (
        "catch_up_schedule",
        "RUNNING",
    )


BATCH_ASSETS = (
    "instructions",
    "completions",
    "evolved_completions",
    "candidates",
    "ratings",
)
PAIR_ASSETS = ("judge_scores", "candidate_pairs", "dpo_pairs")


def stale_view(url: str, batch: str) -> dict[str, tuple[str, set[str]]]:
    """What the UI shows for one batch: {asset: (status, {cause category})}."""
    keys = ", ".join(f'{{path: ["{name}"]}}' for name in (*BATCH_ASSETS, *PAIR_ASSETS))
    data = graphql(
        url,
        f"""{{ assetNodes(assetKeys: [{keys}]) {{
              assetKey {{ path }}
              staleStatus(partition: "{batch}")
              staleCauses(partition: "{batch}") {{ category key {{ path }} }}
        }} }}""",
    )
    return {
        node["assetKey"]["path"][0]: (
            node["staleStatus"],
            {cause["category"] for cause in node["staleCauses"]},
        )
        for node in data["assetNodes"]
    }


RELOAD = """mutation { reloadRepositoryLocation(repositoryLocationName: "prefgen") {
  __typename ... on WorkspaceLocationEntry { name } } }"""


@pytest.mark.slow
def test_ui_stale_view_follows_the_config(tmp_path: Path, tiny_models: Path) -> None:
    config_path = write_config(tmp_path, tiny_models)
    batch = drop_batch(tmp_path, "three.jsonl", mt_bench_lines(3))
    env = {**CLEAN_ENV, "PREFGEN_CONFIG": str(config_path), "DAGSTER_HOME": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "prefgen_dagster.cli", "run", str(batch), "--config",
         str(config_path)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    with dagster_webserver(env, tmp_path / "webserver.log") as url:
        assert stale_view(url, "three.jsonl") == {
            name: ("FRESH", set()) for name in (*BATCH_ASSETS, *PAIR_ASSETS)
        }
        # Another judge aspect: after a reload, the ratings show a changed code version;
        # the stages before them are still fresh.
        config = yaml.safe_load(config_path.read_text())
        config["judge"]["aspects"] = ["overall", "honesty"]
        config_path.write_text(yaml.safe_dump(config))
        reloaded = graphql(url, RELOAD)["reloadRepositoryLocation"]
        assert reloaded["__typename"] == "WorkspaceLocationEntry", reloaded
        assert stale_view(url, "three.jsonl") == {
            **{name: ("FRESH", set()) for name in BATCH_ASSETS},
            "ratings": ("STALE", {"CODE"}),
            # Dagster does not mark descendants in advance.
            **{name: ("FRESH", set()) for name in PAIR_ASSETS},
        }

        # Re-running the ratings (what "materialize unsynced" picks) makes them fresh, and
        # the judges' scores, whose input has new data now, stale.
        with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
            rerun = dg.materialize(
                build_graph(load_config(config_path)).definitions,
                selection=["ratings"],
                partition_key="three.jsonl",
                instance=instance,
                resources=run_resources(str(config_path)),
            )
        assert rerun.success
        assert stale_view(url, "three.jsonl") == {
            **{name: ("FRESH", set()) for name in BATCH_ASSETS},
            "judge_scores": ("STALE", {"DATA"}),
            "candidate_pairs": ("FRESH", set()),
            "dpo_pairs": ("FRESH", set()),
        }
