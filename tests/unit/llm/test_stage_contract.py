"""The LLM stage contract (`llm/stage.py`, `llm/driver.py`): a fourth stage, written in one
folder (`toy_stage/`) and added to the registry with one line, runs in a real Dagster
materialization of the whole batch, re-asks what it cannot parse, and a rerun keeps its
rows without asking anything. Its models are served over HTTP by a `FaultServer`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from prefgen_dagster.config import load_config
from prefgen_dagster.defs import assets
from prefgen_dagster.defs.pipeline_run import materialize_batch
from prefgen_dagster.storage.store import Storage
from tests.unit.http_pipeline import reply, write_http_config
from tests.unit.llm.fault_server import FaultServer
from tests.unit.llm.toy_stage import stage as toy

pytestmark = pytest.mark.usefixtures("fresh_dagster_state")

BATCH = "batch.jsonl"


def answer(content: str) -> str:
    """The toy's questions get a digit, but the first look at "Question 1?" gets words; the
    other stages' prompts get their usual answers."""
    if content.startswith(toy.AGAIN):
        return "4"
    if content.startswith(toy.ASK):
        return "fairly clear" if content.endswith("Question 1?") else "3"
    return reply(content)


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer(reply=answer) as running:
        yield running


def toy_hits(server: FaultServer) -> int:
    return sum(hit.content.startswith((toy.ASK, toy.AGAIN)) for hit in server.hits)


def scores_event(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    [event] = result.asset_materializations_for_node(toy.STAGE.spec.asset)
    return {key: getattr(value, "value", value) for key, value in event.metadata.items()}


def test_a_new_stage_is_one_folder_and_one_registry_line(
    tmp_path: Path, server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(assets, "LLM_STAGES", (*assets.LLM_STAGES, toy.STAGE))  # the line
    path = write_http_config(tmp_path, server, ["Question 0?", "Question 1?", "Question 2?"])
    config = load_config(path)
    storage = Storage(config.resolve(config.paths.duckdb_path))
    with dg.instance_for_test() as instance:
        batch, export = materialize_batch(path, BATCH, instance, log_level="ERROR")
        assert batch.success and export is not None and export.success
        rows = storage.query(
            "SELECT i.instruction, s.score, s.attempts, s.plan_key FROM instruction_scores s "
            "JOIN instructions i USING (instruction_id) ORDER BY i.instruction"
        ).to_dicts()
        assert [(r["instruction"], r["score"], r["attempts"]) for r in rows] == [
            ("Question 0?", 3, 1),
            ("Question 1?", 4, 2),  # words first, asked again
            ("Question 2?", 3, 1),
        ]
        assert all(row["plan_key"] for row in rows)
        first = scores_event(batch)
        assert (first["llm_requests"], first["llm_reused"], first["mean_score"]) == (4, 0, 10 / 3)
        assert first["dagster/row_count"] == 3
        asked = toy_hits(server)
        assert asked == 4

        again, _ = materialize_batch(path, BATCH, instance, log_level="ERROR")
        assert again.success
        rerun = scores_event(again)
        assert toy_hits(server) == asked  # nothing asked, not even the cache looked up
        assert (rerun["llm_requests"], rerun["llm_reused"]) == (0, 3)
        assert rerun["dagster/row_count"] == 3
        assert storage.query("SELECT count(*) AS n FROM instruction_scores")["n"][0] == 3
