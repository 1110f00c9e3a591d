"""The inbox sensor, batch-file resolution and the catch-up schedule's notion of 'stale'."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
import yaml

from prefgen_dagster.config import PipelineConfig, load_config
from prefgen_dagster.defs import automation
from prefgen_dagster.defs.assets import instructions_asset
from prefgen_dagster.defs.automation import inbox_sensor, stale_batches
from prefgen_dagster.defs.partitions import batches
from prefgen_dagster.defs.resources import CONFIG_ENV, PrefgenResource, run_resources
from prefgen_dagster.input import inbox as inbox_module
from prefgen_dagster.input.batches import batch_file
from prefgen_dagster.input.inbox import REFUSED_DIR, refusal
from prefgen_dagster.storage.store import Storage
from tests.unit.input.hub_folders import hub_folder, write_shard

pytestmark = pytest.mark.usefixtures("fresh_dagster_state")


@pytest.fixture
def inbox(tmp_path: Path, config: PipelineConfig, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tmp inbox named by a tmp config file that $PREFGEN_CONFIG points at."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    raw = config.model_dump(mode="json", exclude={"base_dir"})
    raw["paths"] = {
        "inbox_dir": str(folder),
        "duckdb_path": str(tmp_path / "prefgen.duckdb"),
        "export_dir": str(tmp_path / "export"),
    }
    config_path = tmp_path / "prefgen.yaml"
    config_path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    monkeypatch.setenv(CONFIG_ENV, str(config_path))
    return folder


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


def drop(inbox: Path, name: str, text: str = '{"instruction": "hi"}\n', age: float = 10.0) -> Path:
    """Write a file into the inbox with its mtime `age` seconds in the past."""
    path = inbox / name
    path.write_text(text, encoding="utf-8")
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def evaluate(instance: dg.DagsterInstance, cursor: str | None = None) -> dg.SensorResult:
    prefgen = PrefgenResource(config_path=os.environ[CONFIG_ENV])
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"prefgen": prefgen}
    )
    result = inbox_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def added_partitions(result: dg.SensorResult) -> list[str]:
    return [key for request in result.dynamic_partitions_requests for key in request.partition_keys]


def test_settled_file_gives_one_run_and_a_partition(
    inbox: Path, instance: dg.DagsterInstance
) -> None:
    drop(inbox, "batch-1.jsonl")
    result = evaluate(instance)
    assert [r.partition_key for r in result.run_requests] == ["batch-1.jsonl"]
    assert added_partitions(result) == ["batch-1.jsonl"]
    (request,) = result.dynamic_partitions_requests
    assert request.partitions_def_name == batches.name


def test_files_still_being_written_are_ignored(inbox: Path, instance: dg.DagsterInstance) -> None:
    drop(inbox, "fresh.jsonl", age=0.0)
    drop(inbox, "empty.jsonl", text="")
    result = evaluate(instance)
    assert result.run_requests == []
    assert result.dynamic_partitions_requests == []


def test_hidden_and_unsupported_files_are_ignored(
    inbox: Path, instance: dg.DagsterInstance
) -> None:
    drop(inbox, ".hidden.jsonl")
    drop(inbox, "notes.txt")
    drop(inbox, "data.csv.partial")
    (inbox / "folder.jsonl").mkdir()
    drop(inbox, "ok.csv", text="instruction\nhello\n")
    result = evaluate(instance)
    assert [r.partition_key for r in result.run_requests] == ["ok.csv"]
    # Hidden names, downloads in progress and folders stay where they are; notes.txt is refused.
    assert sorted(p.name for p in inbox.iterdir()) == [
        ".hidden.jsonl",
        REFUSED_DIR,
        "data.csv.partial",
        "folder.jsonl",
        "ok.csv",
    ]


def test_a_refused_file_is_looked_at_once_and_moved_aside_with_its_reason(
    inbox: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_at: list[str] = []

    def spy(real_inbox: Path, path: Path, entry: os.stat_result) -> str | None:
        looked_at.append(path.name)
        return refusal(real_inbox, path, entry)

    monkeypatch.setattr(inbox_module, "refusal", spy)
    drop(inbox, "notes.txt", text="my notes")
    drop(inbox, "a,b.jsonl")
    first = evaluate(instance)
    assert first.run_requests == []
    assert sorted(looked_at) == ["a,b.jsonl", "notes.txt"]
    refused = inbox / REFUSED_DIR
    assert (refused / "notes.txt").read_text() == "my notes"  # moved, not deleted
    assert (refused / "notes.txt.reason.txt").read_text() == (
        "unsupported file type '.txt'; use .jsonl, .json, .csv, .parquet\n"
    )
    assert "rename it" in (refused / "a,b.jsonl.reason.txt").read_text()
    aside = sorted(refused.iterdir())

    looked_at.clear()
    second = evaluate(instance, first.cursor)
    assert (second.run_requests, looked_at) == ([], [])
    assert sorted(refused.iterdir()) == aside


def test_a_link_out_of_the_inbox_is_refused_not_read(
    inbox: Path, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    outside = tmp_path / "passwd.jsonl"
    outside.write_text("root:x:0:0:root:/root:/bin/bash\n", encoding="utf-8")
    os.utime(outside, (time.time() - 60, time.time() - 60))
    link = inbox / "passwd.jsonl"
    link.symlink_to(outside)
    os.utime(link, (time.time() - 60, time.time() - 60), follow_symlinks=False)
    result = evaluate(instance)
    assert result.run_requests == []
    assert result.dynamic_partitions_requests == []
    moved = inbox / REFUSED_DIR / "passwd.jsonl"
    assert moved.is_symlink() and moved.readlink() == outside  # the link itself, kept
    reason = (inbox / REFUSED_DIR / "passwd.jsonl.reason.txt").read_text()
    assert f"a link to {str(outside.resolve())!r}, outside the inbox" in reason


def test_cursor_prevents_repeats_and_a_rewrite_runs_again(
    inbox: Path, instance: dg.DagsterInstance
) -> None:
    path = drop(inbox, "batch-1.jsonl", age=60.0)
    first = evaluate(instance)
    assert len(first.run_requests) == 1
    instance.add_dynamic_partitions(batches.name, added_partitions(first))  # as the daemon does

    second = evaluate(instance, first.cursor)
    assert second.run_requests == []
    assert second.dynamic_partitions_requests == []

    drop(inbox, path.name, text='{"instruction": "changed"}\n', age=5.0)
    third = evaluate(instance, second.cursor)
    assert [r.partition_key for r in third.run_requests] == ["batch-1.jsonl"]
    assert third.run_requests[0].run_key != first.run_requests[0].run_key
    assert third.dynamic_partitions_requests == []  # the partition already exists


def test_a_second_file_only_runs_the_new_one(inbox: Path, instance: dg.DagsterInstance) -> None:
    drop(inbox, "one.jsonl")
    first = evaluate(instance)
    drop(inbox, "two.jsonl")
    second = evaluate(instance, first.cursor)
    assert [r.partition_key for r in second.run_requests] == ["two.jsonl"]


def test_a_batch_the_cli_already_ran_is_not_run_again(
    inbox: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`prefgen run` records its runs in the instance `dagster dev` then opens: the sensor
    sees the file in the inbox for the first time, but its batch is done."""
    path = drop(inbox, "done.jsonl", age=60.0)
    instance.add_dynamic_partitions(batches.name, ["done.jsonl"])
    materialize_pairs(instance, "done.jsonl", "hash-1")  # now: after the file was written
    result = evaluate(instance)
    assert result.run_requests == []
    assert result.dynamic_partitions_requests == []
    assert "done.jsonl" in json.loads(result.cursor)

    # Rewritten after its pairs were made; the sensor looks a minute later, once it settled.
    drop(inbox, path.name, text='{"instruction": "changed"}\n', age=-30.0)
    later = time.time() + 60
    monkeypatch.setattr(automation, "time", SimpleNamespace(time=lambda: later))
    again = evaluate(instance, result.cursor)
    assert [r.partition_key for r in again.run_requests] == ["done.jsonl"]


# --- batch_file ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["../secret.jsonl", "..jsonl", "sub/batch.jsonl", "/etc/x.jsonl", "a\\b.jsonl", ""]
)
def test_batch_file_refuses_paths(inbox: Path, name: str) -> None:
    config = load_config(os.environ[CONFIG_ENV])
    with pytest.raises(ValueError, match="not a plain file name"):
        batch_file(config, name)


def test_batch_file_resolves_inside_the_inbox(inbox: Path) -> None:
    config = load_config(os.environ[CONFIG_ENV])
    assert batch_file(config, "batch-1.jsonl") == (inbox / "batch-1.jsonl").resolve()


def test_batch_file_refuses_a_symlink_out_of_the_inbox(inbox: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.jsonl"
    outside.write_text("{}\n", encoding="utf-8")
    (inbox / "link.jsonl").symlink_to(outside)
    config = load_config(os.environ[CONFIG_ENV])
    with pytest.raises(ValueError, match="outside the inbox"):
        batch_file(config, "link.jsonl")


def ingest_batch(instance: dg.DagsterInstance, name: str) -> dg.ExecuteInJobResult:
    """Run `instructions` for one batch, as a run launched from the UI would."""
    instance.add_dynamic_partitions(batches.name, [name])
    return dg.materialize(
        [instructions_asset],
        partition_key=name,
        instance=instance,
        resources=run_resources(os.environ[CONFIG_ENV]),
        raise_on_error=False,
    )


def failure(result: dg.ExecuteInJobResult) -> tuple[str, str]:
    """The class and message of the step's own error (inside Dagster's wrapper)."""
    [event] = [e for e in result.all_events if e.is_step_failure]
    error = event.step_failure_data.error.cause
    return error.cls_name, error.message


def test_the_batch_asset_refuses_a_link_out_of_the_inbox(
    inbox: Path, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """A run for an existing partition, launched from the UI after its file became a link to
    a file outside: nothing is read, the link is moved aside, the schedule leaves it."""
    outside = tmp_path / "passwd.jsonl"
    outside.write_text("root:x:0:0:root:/root:/bin/bash\n", encoding="utf-8")
    (inbox / "passwd.jsonl").symlink_to(outside)
    result = ingest_batch(instance, "passwd.jsonl")
    cls_name, message = failure(result)
    assert cls_name == "InputFileError"
    assert f"a link to {outside.resolve()}, outside the inbox (moved to " in message
    assert (inbox / REFUSED_DIR / "passwd.jsonl").is_symlink()
    assert Storage(tmp_path / "prefgen.duckdb").query("SELECT * FROM rejected_inputs").is_empty()
    assert stale_batches(instance, "hash-1", inbox) == []


def test_a_file_that_cannot_be_read_is_moved_aside_and_not_retried(
    inbox: Path, instance: dg.DagsterInstance
) -> None:
    drop(inbox, "broken.parquet", text="not parquet")
    assert [r.partition_key for r in evaluate(instance).run_requests] == ["broken.parquet"]
    cls_name, message = failure(ingest_batch(instance, "broken.parquet"))
    assert (cls_name, "not a readable Parquet file" in message) == ("InputFileError", True)
    reason = (inbox / REFUSED_DIR / "broken.parquet.reason.txt").read_text()
    assert reason.count("\n") == 1 and "not a readable Parquet file" in reason
    assert not (inbox / "broken.parquet").exists()
    assert stale_batches(instance, "hash-1", inbox) == []  # it would only fail again

    drop(inbox, "broken.parquet", text="fixed, if still not Parquet")  # a file takes its place
    assert stale_batches(instance, "hash-1", inbox) == ["broken.parquet"]


# --- stale_batches -------------------------------------------------------------------------


def materialize_pairs(instance: dg.DagsterInstance, key: str, pipeline_hash: str) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="dpo_pairs", partition=key, metadata={"pipeline_hash": pipeline_hash}
        )
    )


def test_registered_batch_without_pairs_is_stale(inbox: Path, instance: dg.DagsterInstance) -> None:
    instance.add_dynamic_partitions(batches.name, ["a.jsonl"])
    assert stale_batches(instance, "hash-1", inbox) == ["a.jsonl"]


def test_stale_batches_follows_settings_and_file_changes(
    inbox: Path, instance: dg.DagsterInstance
) -> None:
    drop(inbox, "a.jsonl", age=3600)
    drop(inbox, "b.jsonl", age=3600)
    instance.add_dynamic_partitions(batches.name, ["a.jsonl", "b.jsonl"])
    materialize_pairs(instance, "a.jsonl", "hash-1")
    materialize_pairs(instance, "b.jsonl", "hash-1")
    assert stale_batches(instance, "hash-1", inbox) == []
    assert stale_batches(instance, "hash-2", inbox) == ["a.jsonl", "b.jsonl"]
    drop(inbox, "b.jsonl", text='{"instruction": "new"}\n', age=-60)  # rewritten after the run
    assert stale_batches(instance, "hash-1", inbox) == ["b.jsonl"]


def test_the_sensor_watches_the_inbox_of_the_config_the_definitions_were_built_with(
    inbox: Path, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One entry point: `build_definitions(config_path=X)` runs assets on X and its sensor
    watches X's inbox, whatever $PREFGEN_CONFIG says."""
    from prefgen_dagster.defs.definitions import build_definitions

    config_path = os.environ[CONFIG_ENV]
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "elsewhere.yaml"))
    drop(inbox, "a.jsonl")
    defs = build_definitions(config_path=config_path)
    sensor = defs.resolve_sensor_def("inbox_sensor")
    # `with`: the definitions' resources include the run's engines, which have a lifecycle.
    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
        result = sensor(context)
    assert added_partitions(result) == ["a.jsonl"]


def test_a_batch_run_names_every_stage_it_runs(inbox: Path, instance: dg.DagsterInstance) -> None:
    """Dagster's automation skips an asset whose inputs were updated by a run that targets it,
    but only a run that names its assets targets them: a run of the whole job without a
    selection let a tick landing mid-run request the pairs once more."""
    from prefgen_dagster.defs.definitions import build_definitions

    drop(inbox, "a.jsonl")
    defs = build_definitions(config_path=os.environ[CONFIG_ENV])
    sensor = defs.resolve_sensor_def("inbox_sensor")
    with dg.build_sensor_context(
        instance=instance, resources=defs.resources, definitions=defs
    ) as context:
        [request] = sensor(context).run_requests
    assert {key.to_user_string() for key in request.asset_selection} == {
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
    }
    assert request.asset_check_keys is None  # and with them the job's checks


def test_a_watched_datasets_new_revision_becomes_a_batch(
    inbox: Path, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    repo = hub_folder(tmp_path / "questions")
    config_path = Path(os.environ[CONFIG_ENV])
    raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    raw["input"] = {"datasets": [{"name": str(repo), "config": "easy", "split": "test"}]}
    config_path.write_text(yaml.safe_dump(raw), encoding="utf-8")

    first = evaluate(instance)  # the split's file is written, and settles before it runs
    [made] = list(inbox.iterdir())
    assert made.name.startswith("questions.easy.test.") and first.run_requests == []
    os.utime(made, (time.time() - 60, time.time() - 60))
    settled = evaluate(instance, first.cursor)
    assert [r.partition_key for r in settled.run_requests] == [made.name]
    assert evaluate(instance, settled.cursor).run_requests == []  # the same revision: nothing
    write_shard(repo, "easy", "test", 0, ["What is a fjord?"])
    evaluate(instance, settled.cursor)
    assert len(list(inbox.iterdir())) == 2
