"""Automation without engines: the catch-up schedule and the assets' automation conditions."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from prefgen_dagster.bundled import TINY_CONFIG
from prefgen_dagster.config import load_config
from prefgen_dagster.defs.automation import PARTITION_TAG, catch_up_schedule, last_run_failed
from prefgen_dagster.defs.definitions import build_definitions
from prefgen_dagster.defs.partitions import batches
from prefgen_dagster.defs.pipeline_run import materialize_batch
from prefgen_dagster.defs.resources import CONFIG_ENV, PrefgenResource
from prefgen_dagster.defs.verdicts import verdicts_changed
from prefgen_dagster.stages import pipeline_hash
from prefgen_dagster.storage.store import Storage

pytestmark = pytest.mark.usefixtures("fresh_dagster_state")

PAIRS = dg.AssetKey("dpo_pairs")


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "prefgen.yaml"
    path.write_text(TINY_CONFIG.read_text())
    (tmp_path / "data" / "inbox").mkdir(parents=True)
    for name in ("tiny-qwen2", "tiny-llama"):  # the config's folders (no engine runs here)
        (tmp_path / "models" / name).mkdir(parents=True)
    monkeypatch.setenv(CONFIG_ENV, str(path))
    return path


def pairs_made(instance: dg.DagsterInstance, batch_id: str, made_with: str) -> None:
    """Record a dpo_pairs materialization for a batch, as a finished run would."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization(PAIRS, partition=batch_id, metadata={"pipeline_hash": made_with})
    )


def requested(instance: dg.DagsterInstance) -> list[str]:
    config_path = os.environ[CONFIG_ENV]
    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2026, 11, 25, 12, tzinfo=UTC),
        resources={"prefgen": PrefgenResource(config_path=config_path)},
        repository_def=build_definitions(config_path).get_repository_def(),
    )
    result = catch_up_schedule(context)
    if isinstance(result, dg.SkipReason):
        return []
    # Each run names the batch's assets (see `automation.batch_request`).
    assert all(PAIRS in request.asset_selection for request in result)
    return sorted(request.partition_key for request in result)


def test_schedule_retries_failed_and_outdated_batches_only(config_path: Path) -> None:
    config = load_config(config_path)
    inbox = config_path.parent / "data" / "inbox"
    current = pipeline_hash(config)
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


def test_a_batch_held_back_by_its_checks_is_not_a_failed_run() -> None:
    """A run failed by a blocking check held the batch back (re-running gives the same
    verdict); a run failed by its own step is retried."""

    @dg.asset
    def pairs() -> None:
        """Stands in for a batch's last asset."""

    @dg.asset_check(asset=pairs, blocking=True)
    def gate() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=False)

    @dg.asset
    def broken() -> None:
        raise RuntimeError("the engine fell over")

    with dg.instance_for_test() as instance:
        for batch_id, assets, checks in (
            ("held.jsonl", [pairs], [gate]),
            ("broke.jsonl", [broken], []),
        ):
            result = dg.materialize(
                [*assets, *checks],
                instance=instance,
                tags={PARTITION_TAG: batch_id},
                raise_on_error=False,
            )
            assert not result.success
        assert not last_run_failed(instance, "held.jsonl")
        assert last_run_failed(instance, "broke.jsonl")
        assert not last_run_failed(instance, "never-ran.jsonl")


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


BATCH_ASSETS = [
    "instructions",
    "completions",
    "evolved_completions",
    "candidates",
    "ratings",
    "judge_scores",
]
PAIR_MODELS = ["candidate_pairs", "human_agreement", "dpo_pairs"]


def materialized(instance: dg.DagsterInstance, batch_id: str, assets: list[str]) -> None:
    """Record materializations in pipeline order, as a run of those assets would."""
    for asset in assets:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=batch_id))


class Ticks:
    """Successive automation ticks over definitions that may change between ticks (a
    config edit followed by a reload of the code location)."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.cursor = None

    def __call__(self, defs: dg.Definitions) -> dict[str, set[str | None]]:
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=self.instance, cursor=self.cursor
        )
        self.cursor = result.cursor
        keys = defs.resolve_asset_graph().get_all_asset_keys()
        return {
            key.to_user_string(): set(result.get_requested_partitions(key))
            for key in keys
            if result.get_num_requested(key)
        }


def edited(config_path: Path, edit: Callable[[dict[str, Any]], None]) -> dg.Definitions:
    raw = yaml.safe_load(config_path.read_text())
    edit(raw)
    config_path.write_text(yaml.safe_dump(raw))
    return build_definitions(str(config_path))


def test_a_changed_setting_reruns_its_stage_and_what_follows_only(config_path: Path) -> None:
    defs = build_definitions(str(config_path))
    with dg.instance_for_test() as instance:
        tick = Ticks(instance)
        instance.add_dynamic_partitions(batches.name, ["a.jsonl", "b.jsonl"])
        # A new batch is the sensor's to run: the stage condition does not start it too.
        assert tick(defs) == {}
        for batch in ("a.jsonl", "b.jsonl"):
            materialized(instance, batch, [*BATCH_ASSETS, *PAIR_MODELS])
        assert tick(defs) == {"preference_dataset": {None}}
        assert tick(defs) == {}

        # Another judge aspect: ratings are asked again for every batch, in the same runs
        # as the pairs made from them; nothing before the ratings is.
        defs = edited(config_path, lambda c: c["judge"].update(aspects=["honesty"]))
        both = {"a.jsonl", "b.jsonl"}
        assert tick(defs) == {
            "ratings": both,
            "judge_scores": both,
            "candidate_pairs": both,
            "human_agreement": both,
            "dpo_pairs": both,
        }
        for batch in both:
            materialized(instance, batch, ["ratings", "judge_scores", *PAIR_MODELS])
        assert tick(defs) == {"preference_dataset": {None}}

        # Another pairing strategy: only the pair models are re-run.
        defs = edited(config_path, lambda c: c["pairing"].update(strategy="all_pairs"))
        assert tick(defs) == {"candidate_pairs": both, "human_agreement": both, "dpo_pairs": both}
        for batch in both:
            materialized(instance, batch, PAIR_MODELS)
        assert tick(defs) == {"preference_dataset": {None}}
        # A setting no stage reads (the chunk size) starts nothing.
        defs = edited(config_path, lambda c: c.setdefault("engine", {}).update(chunk_size=3))
        assert tick(defs) == {}


def test_new_verdicts_rerun_only_the_pair_models_and_the_export(config_path: Path) -> None:
    """Human verdicts are an input of the pair models: new verdicts for one batch re-run its
    pair models, then the export; nothing before them, no other batch. (A batch whose
    verdicts were never materialized still flows: the test above never does.)"""
    defs = build_definitions(str(config_path))
    config = load_config(config_path)
    storage = Storage(config.resolve(config.paths.duckdb_path))
    with dg.instance_for_test() as instance:
        tick = Ticks(instance)
        instance.add_dynamic_partitions(batches.name, ["a.jsonl", "b.jsonl"])
        assert tick(defs) == {}
        for batch in ("a.jsonl", "b.jsonl"):
            materialized(instance, batch, [*BATCH_ASSETS, "human_verdicts", *PAIR_MODELS])
        assert tick(defs) == {"preference_dataset": {None}}
        verdicts_changed(instance, storage, "a.jsonl")  # as the review pull does
        assert tick(defs) == {name: {"a.jsonl"} for name in PAIR_MODELS}
        materialized(instance, "a.jsonl", PAIR_MODELS)
        assert tick(defs) == {"preference_dataset": {None}}
        assert tick(defs) == {}
