"""A batch whose server fails a few requests for good: real Dagster runs, a real DuckDB file,
the pool and the rewriter served over HTTP by a fault-injecting server on 127.0.0.1 (see
`tests/unit/http_pipeline.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from prefgen_dagster.config import load_config
from prefgen_dagster.defs.pipeline_run import materialize_batch
from prefgen_dagster.export.story import story
from prefgen_dagster.storage.store import Storage
from tests.unit.http_pipeline import POOL, reply, write_http_config
from tests.unit.llm.fault_server import FaultServer

pytestmark = pytest.mark.usefixtures("fresh_dagster_state")

BATCH = "batch.jsonl"
INSTRUCTIONS = 30
BROKEN = 2  # instructions whose every request gets HTTP 500, one per pool member


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer(reply=reply) as running:
        yield running


def write_config(tmp_path: Path, server: FaultServer, **checks: Any) -> Path:
    instructions = [
        f"{'500x999 ' if i < BROKEN else ''}Question number {i}?" for i in range(INSTRUCTIONS)
    ]
    return write_http_config(tmp_path, server, instructions, **checks)


def run_batch(config_path: Path) -> tuple[dg.ExecuteInProcessResult, Any, list[str]]:
    """(batch run, export run, the batch run's log messages)."""
    with dg.instance_for_test() as instance:
        batch, export = materialize_batch(config_path, BATCH, instance, log_level="ERROR")
        logged = [entry.user_message for entry in instance.all_logs(batch.run_id)]
    return batch, export, logged


def stage_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    [event] = result.asset_materializations_for_node(asset)
    return {key: getattr(value, "value", value) for key, value in event.metadata.items()}


def reconciliation(result: dg.ExecuteInProcessResult) -> Any:
    [check] = [
        evaluation
        for evaluation in result.get_asset_check_evaluations()
        if evaluation.check_name == "llm_request_reconciliation"
    ]
    return check


def test_a_few_lasting_failures_still_export_the_complete_pairs(
    tmp_path: Path, server: FaultServer
) -> None:
    config_path = write_config(tmp_path, server)
    storage = Storage(load_config(config_path).resolve("data/prefgen.duckdb"))

    batch, export, logged = run_batch(config_path)
    assert batch.success and export is not None and export.success
    generated = stage_metadata(batch, "completions")
    broken = BROKEN * len(POOL)
    assert (generated["llm_failed"], generated["llm_failed_by_kind"]) == (
        broken,
        {"InternalServerError": broken},
    )
    pairs = storage.query("SELECT DISTINCT instruction_id FROM dpo_pairs")
    assert pairs.height == INSTRUCTIONS - BROKEN
    exported = stage_metadata(export, "preference_dataset")["dagster/row_count"]
    assert exported == storage.query("SELECT count(*) AS n FROM dpo_pairs")["n"][0] > 0
    # The UI shows one pair's whole story on the pairs, as `prefgen inspect` prints it.
    first = storage.query("SELECT min(pair_id) AS p FROM dpo_pairs")["p"][0]
    shown = stage_metadata(batch, "dpo_pairs")["one_pair_story"]
    assert shown.startswith(f"`prefgen inspect {first} ")
    assert story(storage, first) in shown
    # Every request is accounted for: answered, or failed with its reason.
    failed = storage.query(
        "SELECT c.error, f.runs FROM completions c JOIN failed_calls f USING (call_id)"
    )
    assert failed.height == broken
    assert all(row["error"].startswith("InternalServerError") for row in failed.to_dicts())
    assert reconciliation(batch).passed
    # Each engine's progress is in the run log, up to its last request.
    done = f"{INSTRUCTIONS}/{INSTRUCTIONS} requests (0 cached before, {BROKEN} failed)"
    for model in POOL:
        assert any(line.startswith(f"{model}: {done}") for line in logged), model

    # Reruns ask the broken requests again until they have failed in max_failed_runs runs,
    # then leave them failed; nothing answered is asked again.
    attempts_per_run = []
    for _ in range(3):
        before = len(server.hits)
        rerun, _, _ = run_batch(config_path)
        assert rerun.success
        attempts_per_run.append(len(server.hits) - before)
    max_runs = load_config(config_path).engine.max_failed_runs
    assert attempts_per_run == [2 * broken] * (max_runs - 1) + [0]  # max_retries 1: 2 each
    assert stage_metadata(rerun, "completions")["llm_given_up"] == broken
    runs = storage.query("SELECT runs FROM failed_calls")["runs"].to_list()
    assert runs == [max_runs] * broken


def test_too_many_failures_hold_the_batch_back_with_the_reason(
    tmp_path: Path, server: FaultServer
) -> None:
    config_path = write_config(tmp_path, server, max_failed_request_rate=0.01)
    batch, export, _ = run_batch(config_path)
    assert not batch.success and export is None
    check = reconciliation(batch)
    assert not check.passed
    assert "above checks.max_failed_request_rate" in check.metadata["reason"].value
