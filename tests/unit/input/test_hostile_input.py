"""Hostile instruction files: each bad row is rejected with a reason that names its problem,
the run goes on, and input rows = accepted + rejected — in `ingest`, in the context check,
and through the `instructions` asset into DuckDB. Batch file names never leave the inbox.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
import yaml

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.defs.assets import instructions_asset
from prefgen_dagster.defs.partitions import batches
from prefgen_dagster.defs.resources import run_resources
from prefgen_dagster.input.batches import batch_file
from prefgen_dagster.input.context import ContextLimits
from prefgen_dagster.input.read import read_rows
from prefgen_dagster.input.validate import IngestResult, PromptCheck, ingest
from prefgen_dagster.storage.store import Storage

pytestmark = pytest.mark.usefixtures("fresh_dagster_state")


def line(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def ingest_path(path: Path, fits_context: PromptCheck | None = None) -> IngestResult:
    return ingest(read_rows(path), source=path.name, batch_id="b", fits_context=fits_context)


def rejected_by_row(result: IngestResult) -> dict[int, str]:
    return {row["source_row"]: row["reason"] for row in result.rejected}


def accepted_rows(result: IngestResult) -> list[tuple[int, str, str | None]]:
    return [(r["source_row"], r["instruction"], r["system_prompt"]) for r in result.accepted]


# --- JSONL -----------------------------------------------------------------------------------


def test_truncated_last_line_is_rejected_and_the_rest_accepted(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl"
    path.write_bytes(
        line({"instruction": "Name a planet."})
        + b"\n"
        + line({"instruction": "Name a star."})
        + b'\n{"instruction": "Describe the'  # the writer died here: no quote, brace or newline
    )
    result = ingest_path(path)
    assert accepted_rows(result) == [(1, "Name a planet.", None), (2, "Name a star.", None)]
    assert rejected_by_row(result) == {
        3: "not valid JSON: Unterminated string starting at column 17"
    }
    assert result.rejected[0]["raw"] == '{"instruction": "Describe the'


def test_last_line_cut_inside_a_character(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl"
    path.write_bytes(line({"instruction": "Name a planet."}) + b'\n{"instruction": "caf\xc3')
    result = ingest_path(path)
    assert rejected_by_row(result) == {
        2: "invalid UTF-8: 'utf-8' codec can't decode byte 0xc3 in position 20: "
        "unexpected end of data"
    }
    assert result.input_rows == 2


def test_valid_last_line_without_newline_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "no-newline.jsonl"
    path.write_bytes(line({"instruction": "First."}) + b"\r\n" + line({"instruction": "Last."}))
    assert accepted_rows(ingest_path(path)) == [(1, "First.", None), (2, "Last.", None)]


HOSTILE_LINES: list[tuple[bytes, str]] = [
    (b"[" * 100_000, "unreadable JSON: nested too deeply"),
    (
        b'{"instruction": ' + b"9" * 5000 + b"}",
        "unreadable JSON: Exceeds the limit (4300 digits) for integer string conversion: "
        "value has 5000 digits; use sys.set_int_max_str_digits() to increase the limit",
    ),
    (b'"just a string"', "a JSON string, not an object"),
    (b"null", "a JSON null, not an object"),
    (b"3.5", "a JSON number, not an object"),
    (b"[1, 2]", "a JSON array, not an object"),
    (b" \t \x0c", "blank line"),
    (
        b'{"instruction": "bad \\ud800 escape"}',
        "field 'instruction' contains an unpaired surrogate U+D800",
    ),
    (
        b'{"instruction": "nul \\u0000 inside"}',
        "field 'instruction' contains control character U+0000",
    ),
    (
        b'{"instruction": "raw \x07 bell"}',
        "not valid JSON: Invalid control character at column 22",
    ),
    (b'{"instruction": null}', "field 'instruction' is null"),
    (b'{"instruction": ["a"]}', "field 'instruction' is list, not a string"),
    (b'{"instruction": true}', "field 'instruction' is bool, not a string"),
    (b'{"instruction": "\\u200b \\u2060\\n"}', "field 'instruction' is empty"),
    (
        b'{"instruction": "Hi.", "system_prompt": "\\u001b[31mred"}',
        "field 'system_prompt' contains control character U+001B",
    ),
    (b"{}", "missing field 'instruction'; the row has no fields"),
    (
        line({f"k{i}": i for i in range(10)}),
        "missing field 'instruction'; the row has 'k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', "
        "'k7' and 2 more",
    ),
    (
        b'{"\xed\xa0\x80": 1}',  # a surrogate encoded as UTF-8 bytes is not UTF-8
        "invalid UTF-8: 'utf-8' codec can't decode byte 0xed in position 2: "
        "invalid continuation byte",
    ),
    (b'{"\\ud800": 1}', "missing field 'instruction'; the row has '\\ud800'"),
]


@pytest.mark.parametrize(("raw", "reason"), HOSTILE_LINES)
def test_hostile_jsonl_line_is_rejected_with_its_reason(
    tmp_path: Path, raw: bytes, reason: str
) -> None:
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(line({"instruction": "Fine."}) + b"\n" + raw + b"\n")
    result = ingest_path(path)
    assert rejected_by_row(result) == {2: reason}
    assert accepted_rows(result) == [(1, "Fine.", None)]


def test_line_ends_and_blank_system_prompts_are_normalized(tmp_path: Path) -> None:
    path = tmp_path / "ends.jsonl"
    lines = [
        {"instruction": "one\rtwo\r\nthree"},  # old Mac, Windows and Unix line ends inside
        {"instruction": "Hi there.", "system_prompt": "\u200b \n"},  # nothing but blanks
    ]
    path.write_bytes(b"\r\n".join(line(v) for v in lines) + b"\r\n")
    assert accepted_rows(ingest_path(path)) == [
        (1, "one\ntwo\nthree", None),
        (2, "Hi there.", None),
    ]


# --- CSV -------------------------------------------------------------------------------------


def test_hostile_csv_rows_are_rejected_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "hostile.csv"
    rows = [
        b"Fine row.,",  # 1
        b"",  # 2: blank
        b"caf\xe9 au lait,",  # 3: Latin-1, not UTF-8
        b"too,many,values",  # 4
        b"lonely",  # 5
        b"x" * 200_000 + b",",  # 6: over the csv module's default field size limit
        b"After the big one.,Be brief.",  # 7
        b'"bell \x07",',  # 8
        b'"cut off at the end',  # 9: unterminated quote, no newline
    ]
    path.write_bytes(b"\xef\xbb\xbfinstruction,system_prompt\r\n" + b"\r\n".join(rows))
    result = ingest_path(path)
    # A 200,000-character field is a row like any other (whether it fits a model is the
    # context check's question), and the rows after it keep their numbers.
    assert accepted_rows(result) == [
        (1, "Fine row.", None),
        (6, "x" * 200_000, None),
        (7, "After the big one.", "Be brief."),
    ]
    assert rejected_by_row(result) == {
        2: "blank line",
        3: "invalid UTF-8 in column 1 ('instruction')",
        4: "the row has 3 values, the header 2 columns",
        5: "the row has 1 value, the header 2 columns",
        8: "field 'instruction' contains control character U+0007",
        9: "not valid CSV: unexpected end of data",
    }
    raw = {r["source_row"]: r["raw"] for r in result.rejected}
    assert json.loads(raw[3]) == {"instruction": "caf\ufffd au lait", "system_prompt": ""}
    assert json.loads(raw[4]) == ["too", "many", "values"]
    assert result.input_rows == len(rows)


# --- context limits --------------------------------------------------------------------------


@pytest.fixture
def word_model(tmp_path: Path) -> Path:
    """A model folder whose tokenizer makes one token per whitespace-separated word. Its
    tokenizer.json truncates to 4 tokens, which counting must switch off."""
    tokenizers = pytest.importorskip("tokenizers")
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tokenizer.enable_truncation(max_length=4)
    folder = tmp_path / "word-model"
    folder.mkdir()
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def context_sections(model_dir: Path) -> dict[str, object]:
    """gen-a: a local folder with a tokenizer, room 64 - 16 - 8 = 40 tokens. gen-b: a hub
    name, estimated as bytes / 2, room 128 - 24 - 8 - 14 (its longest system prompt) = 82,
    or 96 for a row that brings its own system prompt."""
    return {
        "models": {
            "gen-a": {"path": str(model_dir), "max_model_len": 64},
            "gen-b": {"path": "org/hub-model", "max_model_len": 128},
            "judge-m": {"path": "org/judge"},
        },
        "generation": {
            "pool": [
                {"model": "gen-a", "sampling": {"max_tokens": 16}},
                {
                    "model": "gen-b",
                    "system_prompt_variants": ["Be brief.", "Answer like a pirate would."],
                    "sampling": {"max_tokens": 24},
                },
            ]
        },
        "input": {"context_margin_tokens": 8},
    }


def words(count: int, word: str = "a") -> str:
    return " ".join([word] * count)


GEN_A_ROOM = (
    "more than the 40 that pool model 'gen-a' has room for "
    "(max_model_len 64 minus 16 for the answer and 8 for the chat template)"
)
GEN_B_ROOM = (
    "more than the 82 that pool model 'gen-b' has room for (max_model_len 128 minus 24 for "
    "the answer, 14 for its system prompt and 8 for the chat template)"
)
GEN_B_ROOM_OWN_SYSTEM = (
    "more than the 96 that pool model 'gen-b' has room for "
    "(max_model_len 128 minus 24 for the answer and 8 for the chat template)"
)
# (record, reason or None when accepted)
CONTEXT_ROWS: list[tuple[dict[str, str], str | None]] = [
    ({"instruction": words(40)}, None),  # 1: exactly gen-a's room; 79 bytes for gen-b
    ({"instruction": words(41)}, f"instruction needs 41 tokens, {GEN_A_ROOM}"),  # 2
    ({"instruction": "x" * 164}, None),  # 3: one word; exactly gen-b's estimated room
    (
        {"instruction": "y" * 165},
        f"instruction needs about 83 tokens (estimate: UTF-8 bytes / 2), {GEN_B_ROOM}",
    ),  # 4
    ({"instruction": "z" * 165, "system_prompt": "s" * 26}, None),  # 5: own prompt replaces
    (
        {"instruction": "w" * 165, "system_prompt": "s" * 28},
        "instruction and system prompt need about 97 tokens (estimate: UTF-8 bytes / 2), "
        + GEN_B_ROOM_OWN_SYSTEM,
    ),  # 6
    ({"instruction": words(41)}, "duplicate of row 2"),  # 7
    (
        {"instruction": words(30, "b"), "system_prompt": words(11, "s")},
        f"instruction and system prompt need 41 tokens, {GEN_A_ROOM}",
    ),  # 8
]


def test_context_limits_from_config(
    word_model: Path, make_config: Callable[..., PipelineConfig]
) -> None:
    limits = ContextLimits.from_config(make_config(**context_sections(word_model)))
    described = {entry["model"]: entry for entry in limits.describe()}
    assert [entry["model"] for entry in limits.describe()] == ["gen-a", "gen-b"]  # tightest first
    assert described["gen-a"]["room_for_prompt"] == 40
    assert described["gen-a"]["counted_with"] == f"tokenizer {word_model / 'tokenizer.json'}"
    assert described["gen-b"] == {
        "model": "gen-b",
        "max_model_len": 128,
        "answer_tokens": 24,
        "system_prompt_tokens": 14,
        "margin_tokens": 8,
        "room_for_prompt": 82,
        "counted_with": "estimate: UTF-8 bytes / 2",
    }


def test_too_long_instructions_are_rejected_never_truncated(
    tmp_path: Path, word_model: Path, make_config: Callable[..., PipelineConfig]
) -> None:
    limits = ContextLimits.from_config(make_config(**context_sections(word_model)))
    path = tmp_path / "long.jsonl"
    path.write_bytes(b"\n".join(line(record) for record, _ in CONTEXT_ROWS) + b"\n")
    result = ingest_path(path, fits_context=limits.check)
    expected = {n: reason for n, (_, reason) in enumerate(CONTEXT_ROWS, 1) if reason}
    assert rejected_by_row(result) == expected
    assert [(r["source_row"], r["instruction"]) for r in result.accepted] == [
        (n, record["instruction"])
        for n, (record, reason) in enumerate(CONTEXT_ROWS, 1)
        if not reason
    ]
    assert result.input_rows == len(CONTEXT_ROWS)


def test_without_tokenizers_every_model_is_estimated(
    word_model: Path, make_config: Callable[..., PipelineConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # `import tokenizers` now fails
    limits = ContextLimits.from_config(make_config(**context_sections(word_model)))
    assert {e["counted_with"] for e in limits.describe()} == {"estimate: UTF-8 bytes / 2"}


def test_a_pool_model_without_room_for_a_prompt_is_a_config_error(
    word_model: Path, make_config: Callable[..., PipelineConfig]
) -> None:
    sections = context_sections(word_model)
    sections["generation"]["pool"][0]["sampling"]["max_tokens"] = 56  # type: ignore[index]
    with pytest.raises(ValueError, match="pool model 'gen-a' leaves no room for a prompt"):
        ContextLimits.from_config(make_config(**sections))


# --- through the asset into DuckDB -----------------------------------------------------------


def test_the_instructions_asset_stores_every_row_and_its_reason(
    tmp_path: Path, word_model: Path, config: PipelineConfig
) -> None:
    """A file name with spaces, mapped field names, a raw NUL byte and a too-long prompt:
    the run succeeds and DuckDB holds input = accepted + rejected."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    raw = {
        **config.model_dump(mode="json", exclude={"base_dir"}),
        **context_sections(word_model),
        "paths": {"inbox_dir": str(inbox), "duckdb_path": str(tmp_path / "p.duckdb")},
    }
    raw["input"] |= {"instruction_field": "prompt", "system_prompt_field": "system"}
    config_path = tmp_path / "prefgen.yaml"
    config_path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    name = "hostile batch 1.jsonl"
    (inbox / name).write_bytes(
        b"\xef\xbb\xbf"
        + line({"prompt": "Name a moon.", "system": "Be brief."})
        + b"\r\n"
        + b'{"prompt": "nul \x00 byte"}\r\n'
        + line({"prompt": words(41)})
        + b"\r\n"
        + line({"instruction": "wrong name"})
        + b"\r\n"
        + b'{"prompt": "cut'
    )
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(batches.name, [name])
    result = dg.materialize(
        [instructions_asset],
        partition_key=name,
        instance=instance,
        resources=run_resources(str(config_path)),
    )
    assert result.success
    storage = Storage(tmp_path / "p.duckdb")
    [batch] = storage.query("SELECT * FROM batches").to_dicts()
    assert (batch["input_rows"], batch["accepted_rows"], batch["rejected_rows"]) == (5, 1, 4)
    [accepted] = storage.query("SELECT * FROM instructions").to_dicts()
    assert (accepted["source_row"], accepted["instruction"], accepted["system_prompt"]) == (
        1,
        "Name a moon.",
        "Be brief.",
    )
    rejected = storage.query("SELECT source_row, reason, raw FROM rejected_inputs ORDER BY 1")
    assert rejected.rows() == [
        (
            2,
            "not valid JSON: Invalid control character at column 17",
            '{"prompt": "nul \x00 byte"}',
        ),
        (3, f"instruction needs 41 tokens, {GEN_A_ROOM}", line({"prompt": words(41)}).decode()),
        (
            4,
            "missing field 'prompt' or 'messages' or 'conversations'; the row has 'instruction'",
            '{"instruction": "wrong name"}',
        ),
        (5, "not valid JSON: Unterminated string starting at column 12", '{"prompt": "cut'),
    ]
    [event] = result.asset_materializations_for_node("instructions")
    assert event.metadata["rejected_rows"].value == 4
    assert [e["model"] for e in event.metadata["context_limits"].value] == ["gen-a", "gen-b"]


# --- batch file names ------------------------------------------------------------------------


@pytest.fixture
def inbox_config(tmp_path: Path, make_config: Callable[..., PipelineConfig]) -> PipelineConfig:
    (tmp_path / "inbox").mkdir()
    return make_config(paths={"inbox_dir": str(tmp_path / "inbox")})


@pytest.mark.parametrize("name", ["batch 1.jsonl", " leading space.csv", "a (copy) b.parquet"])
def test_names_with_spaces_stay_in_the_inbox(
    tmp_path: Path, inbox_config: PipelineConfig, name: str
) -> None:
    assert batch_file(inbox_config, name) == (tmp_path / "inbox" / name).resolve()


@pytest.mark.parametrize(
    "name",
    [".hidden.jsonl", "..", ".", "batch.jsonl/..", "../inbox/batch.jsonl", "x/../../y.jsonl"],
)
def test_dot_and_slash_names_are_refused(inbox_config: PipelineConfig, name: str) -> None:
    with pytest.raises(ValueError, match="not a plain file name"):
        batch_file(inbox_config, name)
