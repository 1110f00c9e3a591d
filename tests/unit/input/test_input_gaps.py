"""Input that used to be misread: JSON arrays, UTF-16 files, invisible-only instructions,
dotted batch names, a config file that is not a mapping."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from prefgen_dagster.config import PipelineConfig, load_config
from prefgen_dagster.input.batches import batch_file
from prefgen_dagster.input.read import read_rows
from prefgen_dagster.input.validate import IngestResult, ingest


def ingest_path(path: Path) -> IngestResult:
    return ingest(read_rows(path), source=path.name, batch_id="b")


def outcome(result: IngestResult) -> tuple[list[tuple[int, str]], dict[int, str]]:
    accepted = [(r["source_row"], r["instruction"]) for r in result.accepted]
    return accepted, {r["source_row"]: r["reason"] for r in result.rejected}


def test_a_json_array_is_read_element_by_element(tmp_path: Path) -> None:
    path = tmp_path / "three.json"
    records = [{"instruction": "One."}, {"instruction": "Two."}, 7, {"instruction": "Three."}]
    path.write_text(json.dumps(records, indent=2), encoding="utf-8")
    accepted, rejected = outcome(ingest_path(path))
    assert accepted == [(1, "One."), (2, "Two."), (4, "Three.")]
    assert rejected == {3: "array element: a JSON number, not an object"}


def test_a_json_file_of_lines_is_still_read_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "lines.json"
    path.write_text('{"instruction": "One."}\n[1, 2]\n{"instruction": "Two."}\n')
    accepted, rejected = outcome(ingest_path(path))
    assert accepted == [(1, "One."), (3, "Two.")]
    assert rejected == {2: "a JSON array, not an object"}


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("utf16.jsonl", '{"instruction": "Café one."}\n{"instruction": "Two."}\n'),
        ("utf16.json", '[{"instruction": "Café one."}, {"instruction": "Two."}]'),
        ("utf16.csv", "instruction\nCafé one.\nTwo.\n"),
    ],
)
def test_a_utf16_file_is_decoded_not_misread(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-16"))  # with its byte-order mark
    assert outcome(ingest_path(path)) == ([(1, "Café one."), (2, "Two.")], {})


@pytest.mark.parametrize("name", ["cut.jsonl", "cut.csv"])
def test_a_utf16_file_cut_mid_character_is_refused_once_with_the_reason(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes("instruction\nOne.\n".encode("utf-16") + b"\x00")
    with pytest.raises(ValueError, match=f"{name}: not valid UTF-16"):
        list(read_rows(path))


def test_an_instruction_of_invisible_characters_only_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "bidi.jsonl"
    rows = ["\u202e\u202d", "\u200b \u2060\u00ad", "Visible\u200b text."]
    path.write_text("\n".join(json.dumps({"instruction": r}) for r in rows) + "\n")
    accepted, rejected = outcome(ingest_path(path))
    assert [row for row, _ in accepted] == [3]
    assert rejected == {1: "field 'instruction' is empty", 2: "field 'instruction' is empty"}


@pytest.mark.parametrize("name", ["a..b....jsonl", "v1..2.csv", "notes...parquet"])
def test_dots_inside_a_name_are_harmless(
    tmp_path: Path, make_config: Callable[..., PipelineConfig], name: str
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = make_config(paths={"inbox_dir": str(inbox)})
    assert batch_file(config, name) == (inbox / name).resolve()


def test_a_config_that_is_not_a_mapping_is_named_and_explained(tmp_path: Path) -> None:
    path = tmp_path / "prefgen.yaml"
    path.write_text("- models\n- generation\n")
    with pytest.raises(ValueError, match="prefgen.yaml: the top level must be a mapping") as err:
        load_config(path)
    assert "not a YAML list" in str(err.value)
