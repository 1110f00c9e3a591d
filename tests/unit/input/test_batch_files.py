"""A batch is named by its file's name, so `prefgen run` refuses a file that would replace the
batch of another file of that name (from another folder, with other content), and still
reruns the same file, edited or grown, or a copy with the same bytes. The runs stop where
`prefgen run` would start its Dagster run: everything checked here happens before it."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from prefgen_dagster.cli import main
from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.defs import pipeline_run
from prefgen_dagster.defs.assets import instructions_asset
from prefgen_dagster.defs.partitions import batches
from prefgen_dagster.defs.resources import run_resources
from prefgen_dagster.storage.store import Storage
from tests.unit.test_cli_errors import one_line_error, write_config

NAME = "base.jsonl"


class Stopped(Exception):
    """Raised where `prefgen run` opens its Dagster instance."""


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    def stop(config: PipelineConfig) -> None:
        raise Stopped

    monkeypatch.setattr(pipeline_run, "open_instance", stop)
    return write_config(tmp_path)


def write(path: Path, *instructions: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"instruction": text}) + "\n" for text in instructions))
    return path


def run(file: Path, config_path: Path) -> int | None:
    """`prefgen run`'s exit code when it stopped before its Dagster run, None when it got
    there (the file was placed in the inbox and estimated)."""
    try:
        return main(["run", str(file), "--config", str(config_path)])
    except Stopped:
        return None


def inbox_file(config_path: Path) -> Path:
    return config_path.parent / "data" / "inbox" / NAME


def refusal(file: Path, holder: Path, config_path: Path) -> str:
    return (
        f"{file}: a batch named {NAME!r} already holds {holder} (different content); rename "
        f"the file, or delete {inbox_file(config_path)} to replace that batch"
    )


def ingested(config_path: Path) -> list[str]:
    """`instructions` for the batch; the instructions it stored."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(batches.name, [NAME])
    result = dg.materialize(
        [instructions_asset],
        partition_key=NAME,
        instance=instance,
        resources=run_resources(str(config_path)),
    )
    assert result.success
    rows = Storage(config_path.parent / "data" / "prefgen.duckdb").query(
        "SELECT instruction FROM instructions WHERE batch_id = ? ORDER BY source_row", [NAME]
    )
    return rows["instruction"].to_list()


@pytest.mark.usefixtures("fresh_dagster_state")
def test_a_same_named_file_from_another_folder_is_refused_and_the_first_batch_kept(
    tmp_path: Path, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write(tmp_path / "names" / NAME, "Name a cat.", "Name a dog.")
    other = write(tmp_path / "other" / NAME, "Count to three.")
    assert run(first, config_path) is None
    assert ingested(config_path) == ["Name a cat.", "Name a dog."]
    capsys.readouterr()

    assert run(other, config_path) == 2
    assert one_line_error(capsys) == refusal(other, first, config_path)
    assert inbox_file(config_path).read_text() == first.read_text()
    assert ingested(config_path) == ["Name a cat.", "Name a dog."]


def test_the_same_file_edited_or_grown_and_a_same_bytes_copy_run_again(
    tmp_path: Path, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write(tmp_path / "names" / NAME, "Name a cat.")
    assert run(first, config_path) is None
    for lines in (["Name a cat.", "Name a dog."], ["Name a cow.", "Name a dog.", "Name a pig."]):
        write(first, *lines)
        assert run(first, config_path) is None
        assert inbox_file(config_path).read_text() == first.read_text()

    # The same bytes from elsewhere run; the name stays with the file it was copied from.
    copy = write(tmp_path / "copy" / NAME, "Name a cow.", "Name a dog.", "Name a pig.")
    assert run(copy, config_path) is None
    write(copy, "Something else.")
    capsys.readouterr()
    assert run(copy, config_path) == 2
    assert one_line_error(capsys) == refusal(copy, first, config_path)
    write(first, "Name a cow.")
    assert run(first, config_path) is None
    assert inbox_file(config_path).read_text() == first.read_text()


def test_a_file_dropped_in_the_inbox_keeps_its_name_until_it_is_deleted(
    tmp_path: Path, config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dropped = write(inbox_file(config_path), "Name a moon.")
    assert run(dropped, config_path) is None  # the inbox's own file, as the sensor's
    other = write(tmp_path / "other" / NAME, "Count to three.")
    capsys.readouterr()
    assert run(other, config_path) == 2
    assert one_line_error(capsys) == refusal(other, dropped, config_path)
    assert dropped.read_text() == json.dumps({"instruction": "Name a moon."}) + "\n"

    dropped.unlink()  # what the refusal says to do to replace that batch
    assert run(other, config_path) is None
    assert inbox_file(config_path).read_text() == other.read_text()
