"""Human verdicts as an input (`defs/verdicts.py`): after a batch ran (its models served over
HTTP by a `FaultServer` on 127.0.0.1), verdicts arrive and `materialize_verdicts` re-runs only
the pair models and the export: no request reaches the server, a pair people marked the
other way round is flipped, one they marked both-bad is dropped, and the export says why."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from prefgen_dagster.config import load_config
from prefgen_dagster.defs.pipeline_run import materialize_batch, materialize_verdicts
from prefgen_dagster.storage.store import Storage
from tests.unit.http_pipeline import reply, write_http_config
from tests.unit.llm.fault_server import FaultServer

pytestmark = pytest.mark.usefixtures("fresh_dagster_state")

BATCH = "batch.jsonl"


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer(reply=reply) as running:
        yield running


def verdict(pair_id: str, annotator: str, choice: str) -> dict[str, Any]:
    return {
        "batch_id": BATCH,
        "pair_id": pair_id,
        "annotator": annotator,
        "choice": choice,
        "chosen_shown": "right",
        "task_id": f"task-{pair_id}",
        "annotated_at": datetime(2026, 1, 1),
    }


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {
        event.asset_key.to_user_string()
        for event in result.get_asset_materialization_events()
        if event.asset_key is not None
    }


def test_new_verdicts_rerun_the_pair_models_and_the_export_only(
    tmp_path: Path, server: FaultServer
) -> None:
    config_path = write_http_config(tmp_path, server, [f"Question {i}?" for i in range(3)])
    config = load_config(config_path)
    storage = Storage(config.resolve(config.paths.duckdb_path))
    with dg.instance_for_test() as instance:
        batch, export = materialize_batch(config_path, BATCH, instance, log_level="ERROR")
        assert batch.success and export is not None and export.success
        assert "human_verdicts" in materialized(batch)  # every batch run records its verdicts
        pairs = storage.query("SELECT * FROM candidate_pairs ORDER BY pair_id").to_dicts()
        # Each pool member's answer against its rewrite: 2 pairs per instruction.
        assert len(pairs) == 6 and all(row["human_review"] is None for row in pairs)
        flip, bad = pairs[0], pairs[1]
        rows = [verdict(flip["pair_id"], who, "rejected") for who in ("alice", "bob")]
        rows += [verdict(bad["pair_id"], who, "both_bad") for who in ("alice", "bob")]
        storage.replace_partition("human_verdicts", BATCH, pl.DataFrame(rows))
        requests = len(server.hits)

        rerun, export = materialize_verdicts(config_path, BATCH, instance, log_level="ERROR")
        assert rerun.success and export is not None and export.success
        assert materialized(rerun) == {
            "human_verdicts",
            "candidate_pairs",
            "human_agreement",
            "dpo_pairs",
        }
        assert len(server.hits) == requests  # no engine call
        # The figures are on the model that makes them and on the pairs after it, with the plot.
        for node in ("human_agreement", "dpo_pairs"):
            [event] = rerun.asset_materializations_for_node(node)
            meta = {key: getattr(value, "value", value) for key, value in event.metadata.items()}
            assert (meta["judge_human_agreement"], meta["human_verdicts_scored"]) == (0.0, 2)
        assert "![Agreement with people](data:image/png;base64," in meta["plots"]
        checks = {e.check_name: e.passed for e in rerun.get_asset_check_evaluations()}
        assert checks["judge_human_agreement"]  # 2 verdicts: below review.min_verdicts (20)

    export_dir = config.resolve(config.paths.export_dir)
    assert "(plots/human_agreement.png)" in (export_dir / "README.md").read_text()
    assert (export_dir / "plots" / "human_agreement.png").stat().st_size > 0
    exported = pl.read_parquet(export_dir / "preference_dataset.parquet")
    by_pair = {row["pair_id"]: row for row in exported.to_dicts()}
    assert set(by_pair) == {row["pair_id"] for row in pairs} - {bad["pair_id"]}
    flipped = by_pair.pop(flip["pair_id"])
    assert flipped["human_review"] == "flipped: 2 of 2 verdicts prefer the rejected text"
    assert (flipped["chosen_origin"], flipped["rejected_origin"]) == ("pooled", "evolved")
    assert flipped["chosen_completion_id"] == flip["rejected_completion_id"]
    assert all(row["human_review"] is None for row in by_pair.values())  # nothing else changes
