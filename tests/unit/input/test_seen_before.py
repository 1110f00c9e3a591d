"""Dedup across batches: an instruction that another batch, ingested under the same pipeline
settings, already has is rejected as `seen before` (so it is not answered and exported
twice), counted, and still accounted for as input = accepted + rejected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.defs.assets import instructions_asset
from prefgen_dagster.defs.partitions import batches
from prefgen_dagster.defs.report import print_summary
from prefgen_dagster.defs.resources import run_resources
from prefgen_dagster.input.read import RawRow
from prefgen_dagster.input.validate import SEEN_BEFORE, ingest, instruction_id
from prefgen_dagster.stages import pipeline_hash
from prefgen_dagster.storage.store import Storage

pytestmark = pytest.mark.usefixtures("fresh_dagster_state")


def raw(number: int, instruction: str, system_prompt: str | None = None) -> RawRow:
    record = {"instruction": instruction, "system_prompt": system_prompt}
    return RawRow(number, json.dumps(record), record)


# --- the pure split --------------------------------------------------------------------------


def test_rows_seen_in_an_earlier_batch_are_rejected_naming_it() -> None:
    seen = {
        instruction_id("Name a moon.", None): ("first.jsonl", 4),
        instruction_id("Write a haiku.", "You are a poet."): ("first.jsonl", 9),
    }
    rows = [
        raw(1, "  name a   MOON. "),  # the same after normalization
        raw(2, "Write a haiku."),  # another system prompt: another instruction
        raw(3, "Write a haiku.", "You are a poet."),
        raw(4, "Name a moon."),  # a duplicate inside this file stays "duplicate of row 1"
        raw(5, "Something new."),
    ]
    result = ingest(rows, "second.jsonl", "second.jsonl", seen_before=seen)
    assert [row["source_row"] for row in result.accepted] == [2, 5]
    assert {row["source_row"]: row["reason"] for row in result.rejected} == {
        1: "seen before: batch first.jsonl row 4",
        3: "seen before: batch first.jsonl row 9",
        4: "duplicate of row 1",
    }
    assert all(row["reason"].startswith(SEEN_BEFORE) for row in result.rejected[:2])
    assert result.input_rows == len(rows)
    assert ingest(rows, "s", "s").accepted == ingest(rows, "s", "s", seen_before={}).accepted


# --- through the asset into DuckDB -----------------------------------------------------------


class Inbox:
    """A tmp inbox and DuckDB file, and `instructions` materialized for one batch."""

    def __init__(self, tmp_path: Path, config: PipelineConfig) -> None:
        self.tmp_path = tmp_path
        self.folder = tmp_path / "inbox"
        self.folder.mkdir()
        self.instance = dg.DagsterInstance.ephemeral()
        self.write_config(config.model_dump(mode="json", exclude={"base_dir"}))
        self.storage = Storage(tmp_path / "p.duckdb")

    def write_config(self, raw: dict[str, Any]) -> None:
        raw["paths"] = {
            "inbox_dir": str(self.folder),
            "duckdb_path": str(self.tmp_path / "p.duckdb"),
        }
        self.config_path = self.tmp_path / "prefgen.yaml"
        self.config_path.write_text(yaml.safe_dump(raw), encoding="utf-8")

    def drop(self, name: str, instructions: list[str]) -> None:
        lines = [json.dumps({"instruction": text}) for text in instructions]
        (self.folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.instance.add_dynamic_partitions(batches.name, [name])

    def ingest(self, name: str) -> dg.ExecuteInProcessResult:
        result = dg.materialize(
            [instructions_asset],
            partition_key=name,
            instance=self.instance,
            resources=run_resources(str(self.config_path)),
        )
        assert result.success
        return result

    def accepted(self, name: str) -> list[str]:
        rows = self.storage.query(
            "SELECT instruction FROM instructions WHERE batch_id = ? ORDER BY source_row", [name]
        )
        return rows["instruction"].to_list()

    def reasons(self, name: str) -> dict[int, str]:
        rows = self.storage.query(
            "SELECT source_row, reason FROM rejected_inputs WHERE batch_id = ?", [name]
        )
        return dict(rows.iter_rows())

    def counts(self, name: str) -> tuple[int, int, int]:
        [row] = self.storage.query(
            "SELECT input_rows, accepted_rows, rejected_rows FROM batches WHERE batch_id = ?",
            [name],
        ).rows()
        return row


def seen_before_rows(result: dg.ExecuteInProcessResult) -> int:
    [event] = result.asset_materializations_for_node("instructions")
    return event.metadata["seen_before_rows"].value


def test_a_second_batch_skips_what_the_first_has_and_a_rerun_keeps_its_own(
    tmp_path: Path, config: PipelineConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    inbox = Inbox(tmp_path, config)
    inbox.drop("first.jsonl", ["Name a moon.", "Write a haiku.", "List three primes."])
    assert seen_before_rows(inbox.ingest("first.jsonl")) == 0
    [stamp] = inbox.storage.query("SELECT pipeline_hash FROM batches").rows()
    assert stamp == (pipeline_hash(config),)

    # The same file dropped again under a new name, plus one new instruction.
    inbox.drop(
        "again.jsonl", ["Write a haiku.", "NAME A MOON.", "Something new.", "List three primes."]
    )
    second = inbox.ingest("again.jsonl")
    assert seen_before_rows(second) == 3
    assert inbox.accepted("again.jsonl") == ["Something new."]
    assert inbox.reasons("again.jsonl") == {
        1: "seen before: batch first.jsonl row 2",
        2: "seen before: batch first.jsonl row 1",
        4: "seen before: batch first.jsonl row 3",
    }
    assert inbox.counts("again.jsonl") == (4, 1, 3)  # input = accepted + rejected

    # Materializing the first batch again does not reject its own rows.
    assert seen_before_rows(inbox.ingest("first.jsonl")) == 0
    assert inbox.accepted("first.jsonl") == ["Name a moon.", "Write a haiku.", "List three primes."]

    # What `prefgen run` prints under its stage table.
    print_summary(second, None, inbox.storage, "again.jsonl", 0.0)
    assert "skipped as seen in earlier batches: 3\n" in capsys.readouterr().out
    print_summary(second, None, inbox.storage, "first.jsonl", 0.0)
    assert "seen in earlier batches" not in capsys.readouterr().out


def test_a_batch_under_other_settings_is_not_compared(
    tmp_path: Path, config: PipelineConfig
) -> None:
    inbox = Inbox(tmp_path, config)
    inbox.drop("first.jsonl", ["Name a moon."])
    inbox.ingest("first.jsonl")
    other = config.model_dump(mode="json", exclude={"base_dir"})
    other["generation"]["seed"] += 1  # other answers: not the same pairs
    inbox.write_config(other)
    inbox.drop("second.jsonl", ["Name a moon."])
    assert seen_before_rows(inbox.ingest("second.jsonl")) == 0
    assert inbox.accepted("second.jsonl") == ["Name a moon."]
