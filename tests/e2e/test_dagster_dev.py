"""`dagster dev` with its daemon, left alone: a dropped file flows through every stage, and a
config edit plus a reload re-runs only the stages it affects."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
import yaml

from tests.conftest import CLEAN_ENV

from .conftest import drop_batch, write_config
from .servers import dagster_webserver, graphql
from .test_pipeline_vllm import mt_bench_lines
from .test_webserver import BATCH_ASSETS, RELOAD

RUNS = """{ runsOrError { ... on Runs { results {
  runId status assetSelection { path } tags { key value } } } } }"""


@dataclass(frozen=True)
class Run:
    run_id: str
    status: str
    started_by: str | None
    partition: str | None
    assets: frozenset[str] | None  # None: the whole batch job


def runs(url: str) -> list[Run]:
    found = []
    for run in graphql(url, RUNS)["runsOrError"]["results"]:
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        selection = run["assetSelection"]
        found.append(
            Run(
                run["runId"],
                run["status"],
                tags.get("dagster/sensor_name") or tags.get("dagster/schedule_name"),
                tags.get("dagster/partition"),
                frozenset(k["path"][0] for k in selection) if selection else None,
            )
        )
    return found


def wait_for_runs(url: str, done: Callable[[list[Run]], bool], log: Path) -> list[Run]:
    """Poll until `done(successful runs)`; fail at once if a run fails."""
    deadline = time.monotonic() + 420
    while True:
        current = runs(url)
        assert not [r for r in current if r.status == "FAILURE"], log.read_text()[-5000:]
        succeeded = [r for r in current if r.status == "SUCCESS"]
        if done(succeeded) and all(r.status == "SUCCESS" for r in current):
            return succeeded
        assert time.monotonic() < deadline, f"runs so far: {current}"
        time.sleep(2)


def exports(found: list[Run]) -> int:
    return sum(1 for r in found if r.assets == {"preference_dataset"})


@pytest.mark.slow
def test_dagster_dev_runs_a_new_batch_and_reruns_what_a_config_edit_affects(
    tmp_path: Path, tiny_models: Path
) -> None:
    config_path = write_config(tmp_path, tiny_models)
    (tmp_path / "data" / "inbox").mkdir(parents=True)
    env = {**CLEAN_ENV, "PREFGEN_CONFIG": str(config_path), "DAGSTER_HOME": str(tmp_path)}
    log = tmp_path / "dagster-dev.log"
    with dagster_webserver(env, log, with_daemon=True) as url:
        batch = drop_batch(tmp_path, "four.jsonl", mt_bench_lines(4))
        settled = time.time() - 10
        os.utime(batch, (settled, settled))

        # The sensor runs every stage for the new file; the automation then exports.
        first = wait_for_runs(url, lambda found: exports(found) >= 1, log)
        [batch_run] = [r for r in first if r.started_by == "inbox_sensor"]
        assert batch_run.partition == "four.jsonl"
        assert {r.assets for r in first if r.started_by == "prefgen_automation"} == {
            frozenset({"preference_dataset"})
        }  # no stage was run twice

        # Another judge aspect, then a reload: one automation run of ratings and pairs.
        config = yaml.safe_load(config_path.read_text())
        config["judge"]["aspects"] = ["overall", "honesty"]
        config_path.write_text(yaml.safe_dump(config))
        assert graphql(url, RELOAD)["reloadRepositoryLocation"]["__typename"] == (
            "WorkspaceLocationEntry"
        )
        before = {r.run_id for r in first}
        second = wait_for_runs(url, lambda found: exports(found) >= 2, log)
        # The hourly catch-up schedule may fire meanwhile (at :00) and re-run the batch, made
        # with other settings now, in full: its job, not the automation's.
        new = [r for r in second if r.run_id not in before and r.started_by != "catch_up_schedule"]
        assert sorted((r.partition or "", sorted(r.assets or BATCH_ASSETS)) for r in new) == [
            ("", ["preference_dataset"]),
            (
                "four.jsonl",
                ["candidate_pairs", "dpo_pairs", "human_agreement", "judge_scores", "ratings"],
            ),
        ]

    with duckdb.connect(str(tmp_path / "data" / "prefgen.duckdb"), read_only=True) as con:
        aspects = con.execute("SELECT DISTINCT aspect FROM ratings ORDER BY 1").fetchall()
    assert aspects == [("honesty",), ("overall",)]
