"""Automation without engines: the catch-up schedule and the export's automation condition."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from prefgen_dagster.automation import catch_up_schedule
from prefgen_dagster.cli import DEMO_CONFIG
from prefgen_dagster.config import load_config
from prefgen_dagster.definitions import build_definitions
from prefgen_dagster.partitions import batches
from prefgen_dagster.pipeline_run import materialize_batch
from prefgen_dagster.resources import CONFIG_ENV

PAIRS = dg.AssetKey("dpo_pairs")


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "prefgen.yaml"
    path.write_text(DEMO_CONFIG.read_text())
    (tmp_path / "data" / "inbox").mkdir(parents=True)
    monkeypatch.setenv(CONFIG_ENV, str(path))
    return path


def pairs_made(instance: dg.DagsterInstance, batch_id: str, pipeline_hash: str) -> None:
    """Record a dpo_pairs materialization for a batch, as a finished run would."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            PAIRS, partition=batch_id, metadata={"pipeline_hash": pipeline_hash}
        )
    )


def requested(instance: dg.DagsterInstance) -> list[str]:
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=datetime(2026, 11, 25, 12, tzinfo=UTC)
    )
    result = catch_up_schedule(context)
    if isinstance(result, dg.SkipReason):
        return []
    return sorted(request.partition_key for request in result)


def test_schedule_retries_failed_and_outdated_batches_only(config_path: Path) -> None:
    config = load_config(config_path)
    inbox = config_path.parent / "data" / "inbox"
    current = config.pipeline_hash()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(batches.name, ["done.jsonl", "old.jsonl", "broke.jsonl"])
        for name in ("done.jsonl", "old.jsonl", "broke.jsonl"):
            (inbox / name).write_text('{"instruction": "hi"}\n')
            os.utime(inbox / name, (1, 1))  # the files predate every run
        pairs_made(instance, "done.jsonl", current)
        pairs_made(instance, "old.jsonl", "made-with-other-settings")
        pairs_made(instance, "broke.jsonl", current)
        assert requested(instance) == ["old.jsonl"]

        # A later run of broke.jsonl fails (its file vanished): the schedule retries it.
        (inbox / "broke.jsonl").unlink()
        failed, export = materialize_batch(config_path, "broke.jsonl", instance, log_level="ERROR")
        assert not failed.success and export is None
        assert requested(instance) == ["broke.jsonl", "old.jsonl"]


def test_export_follows_any_batch_even_when_another_never_ran(config_path: Path) -> None:
    defs = build_definitions(str(config_path))
    export = dg.AssetKey("preference_dataset")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(batches.name, ["ok.jsonl", "never-ran.jsonl"])
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        pairs_made(instance, "ok.jsonl", "h")
        second = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=first.cursor
        )
        third = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=second.cursor
        )
    assert first.get_num_requested(export) == 0
    assert second.get_num_requested(export) == 1
    assert third.get_num_requested(export) == 0
