"""Reading instruction files: every line is either accepted or rejected with a reason."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import polars as pl
import pytest

from prefgen_dagster.input.read import read_rows
from prefgen_dagster.input.validate import IngestResult, ingest, instruction_id

BATCH = "batch-1.jsonl"


def jsonl_line(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def ingest_file(path: Path) -> IngestResult:
    return ingest(read_rows(path), source=path.name, batch_id=BATCH)


def rejected_by_row(result: IngestResult) -> dict[int, str]:
    return {row["source_row"]: row["reason"] for row in result.rejected}


# One entry per line of the messy file: (bytes of the line, expected reason fragment or None
# for an accepted row). The file is joined with CRLF and the first line carries a UTF-8 BOM.
MESSY_LINES: list[tuple[bytes, str | None]] = [
    (jsonl_line({"instruction": "Explain photosynthesis."}), None),  # 1 (BOM)
    (b"", "blank"),  # 2
    (b"{not json", "not valid JSON"),  # 3
    (jsonl_line(["instruction", "a list"]), "not an object"),  # 4
    (jsonl_line({"prompt": "wrong field name"}), "missing field 'instruction'"),  # 5
    (jsonl_line({"instruction": ""}), "empty"),  # 6
    (jsonl_line({"instruction": " \t  "}), "empty"),  # 7
    (jsonl_line({"instruction": "\u200b\u200d\u2060"}), "empty"),  # 8
    (jsonl_line({"instruction": 42}), "int, not a string"),  # 9
    (jsonl_line({"instruction": "Explain photosynthesis."}), "duplicate of row 1"),  # 10
    (jsonl_line({"instruction": "  explain   PHOTOSYNTHESIS. "}), "duplicate of row 1"),  # 11
    (b'{"instruction": "caf\xe9 bad bytes"}', "invalid UTF-8"),  # 12
    (
        jsonl_line({"instruction": "Write a haiku.", "system_prompt": "You are a poet."}),
        None,
    ),  # 13
    (jsonl_line({"instruction": "Write a haiku."}), None),  # 14: other system prompt
    (jsonl_line({"instruction": "List three primes.", "system_prompt": None}), None),  # 15
]


@pytest.fixture
def messy_file(tmp_path: Path) -> Path:
    path = tmp_path / BATCH
    body = b"\r\n".join(line for line, _ in MESSY_LINES) + b"\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + body)
    return path


def test_every_bad_line_is_rejected_once_with_its_reason(messy_file: Path) -> None:
    result = ingest_file(messy_file)
    expected = {n: reason for n, (_, reason) in enumerate(MESSY_LINES, 1) if reason}
    rejected = rejected_by_row(result)
    assert sorted(rejected) == sorted(expected)
    assert len(result.rejected) == len(expected)  # one rejection per bad line
    for number, fragment in expected.items():
        assert fragment in rejected[number], (number, rejected[number])
    assert {row["batch_id"] for row in result.rejected} == {BATCH}
    assert {row["source"] for row in result.rejected} == {BATCH}


def test_rejected_rows_keep_the_raw_line(messy_file: Path) -> None:
    raw = {row["source_row"]: row["raw"] for row in ingest_file(messy_file).rejected}
    assert raw[3] == "{not json"
    assert raw[9] == '{"instruction": 42}'
    assert "caf" in raw[12] and "\ufffd" in raw[12]  # shown with a replacement character


def test_accepted_rows_in_order_and_normalized(messy_file: Path) -> None:
    result = ingest_file(messy_file)
    accepted = [(r["source_row"], r["instruction"], r["system_prompt"]) for r in result.accepted]
    assert accepted == [
        (1, "Explain photosynthesis.", None),  # the BOM and the CR are gone
        (13, "Write a haiku.", "You are a poet."),
        (14, "Write a haiku.", None),
        (15, "List three primes.", None),
    ]
    assert all(r["source"] == BATCH and r["batch_id"] == BATCH for r in result.accepted)


def test_every_line_is_accounted_for(messy_file: Path) -> None:
    result = ingest_file(messy_file)
    assert result.input_rows == len(result.accepted) + len(result.rejected) == len(MESSY_LINES)
    assert len(result.accepted) == 4


def test_instruction_ids_are_stable_and_normalization_aware(messy_file: Path) -> None:
    first, second = ingest_file(messy_file), ingest_file(messy_file)
    assert [r["instruction_id"] for r in first.accepted] == [
        r["instruction_id"] for r in second.accepted
    ]
    assert instruction_id("Explain photosynthesis.", None) == instruction_id(
        "  explain\u200b   PHOTOSYNTHESIS.\n", None
    )
    ids = [r["instruction_id"] for r in first.accepted]
    assert len(set(ids)) == len(ids)
    # Same text, different system prompt: two instructions, not a duplicate.
    assert ids[1] != ids[2]
    assert instruction_id("Write a haiku.", "You are a poet.") != instruction_id(
        "Write a haiku.", None
    )
    assert instruction_id("Write a haiku.", None) != instruction_id("Write a limerick.", None)


def test_control_characters_and_non_string_system_prompt_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    lines = [
        {"instruction": "bell \x07 inside"},
        {"instruction": "ok", "system_prompt": 7},
        {"instruction": "tabs\tand\nnewlines are fine"},
    ]
    path.write_bytes(b"\n".join(jsonl_line(v) for v in lines))
    result = ingest_file(path)
    assert rejected_by_row(result) == {
        1: "field 'instruction' contains control character U+0007",
        2: "field 'system_prompt' is int, not a string",
    }
    assert [r["instruction"] for r in result.accepted] == ["tabs\tand\nnewlines are fine"]


def test_csv_with_quoted_newline_and_blank_system_prompt(tmp_path: Path) -> None:
    path = tmp_path / "batch.csv"
    path.write_text(
        "instruction,system_prompt\r\n"
        '"Write a poem\r\nabout the sea.",You are a poet.\r\n'
        "Summarize this text.,\r\n"
        ",orphan system prompt\r\n"
        '"write a POEM\r\nabout the sea. ",You are a poet.\r\n',
        encoding="utf-8",
        newline="",
    )
    result = ingest_file(path)
    assert [(r["source_row"], r["instruction"], r["system_prompt"]) for r in result.accepted] == [
        (1, "Write a poem\nabout the sea.", "You are a poet."),
        (2, "Summarize this text.", None),
    ]
    assert rejected_by_row(result) == {3: "field 'instruction' is empty", 4: "duplicate of row 1"}
    assert result.input_rows == 4


def test_parquet_via_polars(tmp_path: Path) -> None:
    path = tmp_path / "batch.parquet"
    pl.DataFrame(
        {
            "instruction": ["Name a color.", "   ", "name a  color.", "Count to three."],
            "system_prompt": [None, None, None, "Be terse."],
        }
    ).write_parquet(path)
    result = ingest_file(path)
    assert [(r["source_row"], r["instruction"], r["system_prompt"]) for r in result.accepted] == [
        (1, "Name a color.", None),
        (4, "Count to three.", "Be terse."),
    ]
    assert rejected_by_row(result) == {2: "field 'instruction' is empty", 3: "duplicate of row 1"}
    assert json.loads(result.rejected[0]["raw"]) == {"instruction": "   ", "system_prompt": None}


def test_unsupported_suffix_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unsupported file type '.txt'"):
        list(read_rows(path))


# --- field names mapped in config ------------------------------------------------------------


def ingest_mapped(path: Path) -> IngestResult:
    return ingest(
        read_rows(path),
        source=path.name,
        batch_id=BATCH,
        instruction_field="prompt",
        system_prompt_field="system",
    )


def test_jsonl_with_mapped_field_names(tmp_path: Path) -> None:
    path = tmp_path / "mapped.jsonl"
    lines = [
        {"prompt": "Name a river.", "system": "Be brief."},
        {"instruction": "Name a river."},  # the default name means nothing now
        {"prompt": "Name a river.", "system_prompt": "ignored: not the mapped name"},
    ]
    path.write_bytes(b"\n".join(jsonl_line(v) for v in lines) + b"\n")
    result = ingest_mapped(path)
    assert [(r["source_row"], r["instruction"], r["system_prompt"]) for r in result.accepted] == [
        (1, "Name a river.", "Be brief."),
        (3, "Name a river.", None),
    ]
    assert rejected_by_row(result) == {2: "missing field 'prompt'; the row has 'instruction'"}


def test_csv_with_mapped_column_and_quoted_newlines(tmp_path: Path) -> None:
    path = tmp_path / "mapped.csv"
    path.write_text(
        "id,prompt,system\r\n"
        '1,"Line one,\r\nline two.",Be kind.\r\n'
        '2,"""Quoted"" word",\r\n'
        "3,Line one.,\r\n",
        encoding="utf-8",
        newline="",
    )
    result = ingest_mapped(path)
    assert [(r["source_row"], r["instruction"], r["system_prompt"]) for r in result.accepted] == [
        (1, "Line one,\nline two.", "Be kind."),
        (2, '"Quoted" word', None),
        (3, "Line one.", None),
    ]
    assert result.rejected == []


def test_csv_without_the_mapped_column_rejects_every_row(tmp_path: Path) -> None:
    """Rows, not the file, are rejected: the count still reconciles and the raw rows stay."""
    path = tmp_path / "unmapped.csv"
    path.write_text("instruction,system_prompt\nName a river.,\nName a lake.,Be brief.\n")
    result = ingest_mapped(path)
    assert result.accepted == []
    reason = "missing field 'prompt'; the row has 'instruction', 'system_prompt'"
    assert rejected_by_row(result) == {1: reason, 2: reason}
    assert json.loads(result.rejected[1]["raw"]) == {
        "instruction": "Name a lake.",
        "system_prompt": "Be brief.",
    }


def test_parquet_with_mapped_column(tmp_path: Path) -> None:
    path = tmp_path / "mapped.parquet"
    pl.DataFrame(
        {"prompt": ["Name a river.", None, "Count to two."], "system": [None, None, "Be terse."]}
    ).write_parquet(path)
    result = ingest_mapped(path)
    assert [(r["source_row"], r["instruction"], r["system_prompt"]) for r in result.accepted] == [
        (1, "Name a river.", None),
        (3, "Count to two.", "Be terse."),
    ]
    assert rejected_by_row(result) == {2: "field 'prompt' is null"}


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_empty_file_is_an_empty_batch(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    result = ingest_file(path)
    assert (result.input_rows, len(result.accepted), len(result.rejected)) == (0, 0, 0)


@pytest.mark.parametrize(("name", "body"), [("bom.jsonl", b"\xef\xbb\xbf"), ("header.csv", b"a\n")])
def test_file_with_no_data_rows_is_an_empty_batch(tmp_path: Path, name: str, body: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(body)
    assert ingest_file(path).input_rows == 0


# --- the context check hook --------------------------------------------------------------------


def test_context_check_sees_distinct_valid_prompts_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    lines = [jsonl_line({"instruction": f"Task {i}" + " long" * (i % 7 == 0)}) for i in range(5000)]
    lines[10] = lines[3]  # a duplicate is not checked again
    lines[11] = b"{oops"
    path.write_bytes(b"\n".join(lines) + b"\n")
    chunks: list[int] = []

    def too_long(prompts: list[tuple[str, str | None]]) -> list[str | None]:
        chunks.append(len(prompts))
        return ["too long" if text.endswith("long") else None for text, _ in prompts]

    result = ingest(read_rows(path), path.name, BATCH, fits_context=too_long)
    assert chunks == [2048, 2048, 902]  # 5000 rows, 2 rejected before the check
    too_long_rows = [i + 1 for i in range(5000) if i % 7 == 0 and i not in (10, 11)]
    expected = {row: "too long" for row in too_long_rows} | {
        11: "duplicate of row 4",
        12: "not valid JSON: Expecting property name enclosed in double quotes at column 2",
    }
    assert rejected_by_row(result) == expected
    assert [r["source_row"] for r in result.rejected] == sorted(expected)  # source order
    assert result.input_rows == 5000
    assert len(result.accepted) == 5000 - len(expected)


# --- bounded memory ----------------------------------------------------------------------------


def test_100k_line_file_in_bounded_memory(tmp_path: Path) -> None:
    """Only the accepted rows (not the lines they came from) stay in memory, and every line
    is accounted for."""
    path = tmp_path / "big.jsonl"
    padding = "x" * 300  # a field ingest must not keep: the file is then ~34 MiB
    with path.open("w", encoding="utf-8") as handle:
        for i in range(100_000):
            if i % 100 == 1:
                handle.write("{not json\n")
            elif i % 100 == 2:
                handle.write(json.dumps({"instruction": f"Task {i - 2}: explain topic {i - 2}."}))
                handle.write("\n")
            else:
                record = {"instruction": f"Task {i}: explain topic {i}.", "notes": padding}
                handle.write(json.dumps(record) + "\n")
    tracemalloc.start()
    try:
        result = ingest_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.input_rows == 100_000 == len(result.accepted) + len(result.rejected)
    assert len(result.rejected) == 2000
    assert rejected_by_row(result)[3] == "duplicate of row 1"
    assert peak < 150 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_the_rows_own_fields_are_kept_for_the_export(tmp_path: Path) -> None:
    path = tmp_path / "fields.jsonl"
    lines = [
        {"instruction": "Name a planet.", "id": 7, "category": "space", "system_prompt": "Hi."},
        {"instruction": "Name a river."},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    first, second = ingest_file(path).accepted
    # The instruction and system prompt have columns of their own; the rest travels as JSON.
    assert json.loads(first["input_fields"]) == {"id": 7, "category": "space"}
    assert second["input_fields"] is None
