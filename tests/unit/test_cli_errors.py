"""`prefgen` says what is wrong in one line, naming the file, before doing any work: exit 2 and
no traceback, unless `--verbose` asks for one."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from prefgen_dagster.bundled import TINY_CONFIG
from prefgen_dagster.cli import build_parser, main
from prefgen_dagster.config import ConfigError, load_config
from prefgen_dagster.cost import plan_batch
from prefgen_dagster.input.read import InputFileError, read_rows
from prefgen_dagster.input.validate import ingest
from prefgen_dagster.storage.store import Storage


def write_config(folder: Path, **sections: Any) -> Path:
    """tiny.yaml in `folder`, its model folders made (empty: nothing here runs an engine),
    with whole top-level sections replaced."""
    config = yaml.safe_load(TINY_CONFIG.read_text())
    for spec in config["models"].values():
        (folder / spec["path"]).mkdir(parents=True, exist_ok=True)
    config.update(sections)
    path = folder / "prefgen.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def batch_file(folder: Path, name: str = "batch.jsonl") -> Path:
    path = folder / name
    path.write_text('{"instruction": "hi"}\n')
    return path


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("prefgen: ") and len(err.splitlines()) == 1, err
    assert "Traceback" not in captured.err + captured.out
    return err.removeprefix("prefgen: ")


def test_an_unusable_duckdb_path_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    config_path = write_config(tmp_path, paths={"duckdb_path": str(blocker / "prefgen.duckdb")})

    assert main(["run", str(batch_file(tmp_path)), "--config", str(config_path)]) == 2
    err = one_line_error(capsys)
    assert f"{blocker}/prefgen.duckdb: cannot create the DuckDB file's lock" in err


# A child that opens the DuckDB file and keeps it open, as a notebook or the UI would.
HOLD_DUCKDB = (
    "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('held', flush=True); "
    "time.sleep(120)"
)


@pytest.mark.parametrize("command", ["run", "estimate"])
def test_a_duckdb_file_held_by_another_process_is_one_line_naming_it_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    config_path = write_config(tmp_path)
    db = tmp_path / "data" / "prefgen.duckdb"
    db.parent.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_DUCKDB, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert main([command, str(batch_file(tmp_path)), "--config", str(config_path)]) == 2
    finally:
        holder.kill()
        holder.wait()
    err = one_line_error(capsys)
    assert err.startswith(f"{db}: in use by another process (") and f"PID {holder.pid})" in err
    assert not (tmp_path / "data" / "inbox" / "batch.jsonl").exists()  # stopped before a copy


def test_a_file_that_is_not_duckdb_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = write_config(tmp_path)
    db = tmp_path / "data" / "prefgen.duckdb"
    db.parent.mkdir()
    db.write_text("not a database\n" * 1000)
    assert main(["run", str(batch_file(tmp_path)), "--config", str(config_path)]) == 2
    err = one_line_error(capsys)
    assert err.startswith(f"{db}: cannot open: ") and "not a valid DuckDB database file" in err


def broken_configs(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (config file, what its one-line error says after the file name)."""
    cases: dict[str, tuple[Path, str]] = {}
    listing = folder / "list.yaml"
    listing.write_text("- models\n- generation\n")
    cases["not a mapping"] = (listing, "the top level must be a mapping")
    syntax = folder / "syntax.yaml"
    syntax.write_text("models:\n  a: {path: x\ngeneration: 1\n")
    cases["yaml syntax"] = (syntax, "line 3, column 11: invalid YAML")
    cases["missing"] = (folder / "nowhere.yaml", "no such config file")
    typed = write_config(folder / "typed", engine={"chunk_size": "lots"})
    cases["type"] = (typed, "engine.chunk_size: Input should be a valid integer")
    tiny = yaml.safe_load(TINY_CONFIG.read_text())["models"]["tiny-qwen2"]
    typo = write_config(folder / "typo")
    config = yaml.safe_load(typo.read_text())
    config["models"]["tiny-qwen2"] = {**tiny, "path": "./modles/tiny-qwen2"}
    typo.write_text(yaml.safe_dump(config))
    cases["local folder"] = (typo, "models.tiny-qwen2.path: no such folder")
    return cases


@pytest.mark.parametrize(
    "case", ["not a mapping", "yaml syntax", "missing", "type", "local folder"]
)
@pytest.mark.parametrize("command", ["run", "estimate"])
def test_a_config_error_is_one_line_naming_the_file_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, command: str
) -> None:
    config_path, expected = broken_configs(tmp_path)[case]
    assert main([command, str(batch_file(tmp_path)), "--config", str(config_path)]) == 2
    err = one_line_error(capsys)
    assert err.startswith(f"{config_path}: ") and expected in err


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_shows_the_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    config_path, _ = broken_configs(tmp_path)["local folder"]
    args = ["estimate", str(batch_file(tmp_path)), "--config", str(config_path)]
    args = ["--verbose", *args] if where == "before" else [*args, "--verbose"]
    with pytest.raises(ConfigError, match="no such folder"):
        main(args)
    assert capsys.readouterr().err == ""


def test_a_missing_batch_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = write_config(tmp_path)
    missing = tmp_path / "gone.jsonl"
    for command in ("run", "estimate"):
        assert main([command, str(missing), "--config", str(config_path)]) == 2
        assert one_line_error(capsys) == f"{missing}: no such file"


def test_an_unusable_batch_name_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = write_config(tmp_path)
    hidden = batch_file(tmp_path, ".hidden.jsonl")
    assert main(["run", str(hidden), "--config", str(config_path)]) == 2
    assert one_line_error(capsys).startswith(f"{hidden}: not usable as a batch name")
    assert not (tmp_path / "data" / "prefgen.duckdb").exists()  # stopped before any work


@pytest.mark.parametrize("name", ["notes.txt", "README.md", "base.jsonl.gz"])
@pytest.mark.parametrize("command", ["run", "estimate"])
def test_a_file_of_an_unsupported_type_says_so_and_lists_the_supported_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, command: str
) -> None:
    config_path = write_config(tmp_path)
    path = batch_file(tmp_path, name)
    assert main([command, str(path), "--config", str(config_path)]) == 2
    suffix = name[name.rindex(".") :]
    assert one_line_error(capsys) == (
        f"{path}: unsupported file type {suffix!r}; use .jsonl, .json, .csv, .parquet"
    )


@pytest.mark.parametrize("too_long", ["file name", "path"])
@pytest.mark.parametrize("command", ["run", "estimate"])
def test_a_path_too_long_for_the_file_system_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], too_long: str, command: str
) -> None:
    config_path = write_config(tmp_path)
    if too_long == "file name":
        path = tmp_path / ("n" * 300 + ".jsonl")  # over 255 bytes
    else:
        path = tmp_path.joinpath(*["d" * 200] * 25, "batch.jsonl")  # over 4096 bytes
    assert main([command, str(path), "--config", str(config_path)]) == 2
    err = one_line_error(capsys)
    shown, _, reason = err.partition(": ")
    assert reason == "File name too long (ENAMETOOLONG)"
    assert len(shown) <= 200 and "…" in shown  # cut in the middle, both ends kept
    assert shown.startswith(str(tmp_path)[:60]) and shown.endswith(path.name[-40:])


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("cut.jsonl", "instruction\n".encode("utf-16") + b"\x00", "not valid UTF-16"),
        ("fake.parquet", b"not parquet at all", "not a readable Parquet file"),
    ],
)
def test_an_unreadable_input_file_is_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: bytes,
    expected: str,
) -> None:
    config_path = write_config(tmp_path)
    path = tmp_path / name
    path.write_bytes(content)
    assert main(["estimate", str(path), "--config", str(config_path)]) == 2
    assert one_line_error(capsys).startswith(f"{path}: {expected}")
    with pytest.raises(InputFileError):
        main(["estimate", str(path), "--config", str(config_path), "--verbose"])


def test_every_command_and_argument_has_help_and_there_is_a_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in commands.choices.items():
        for action in command._actions:
            assert action.help, f"prefgen {name} {action.dest}: no help text"
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("prefgen ")


def test_inspect_of_an_unknown_id_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    assert main(["inspect", "no-such-id", "--config", str(config)]) == 2
    assert one_line_error(capsys) == "no-such-id: no pair, instruction or completion with this id"


def test_estimate_says_how_much_the_cache_already_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = write_config(tmp_path)
    batch = tmp_path / "batch.jsonl"
    batch.write_text('{"instruction": "Name a prime."}\n{"instruction": "Name a colour."}\n')
    assert main(["estimate", str(batch), "--config", str(config_path)]) == 0
    assert "already cached" not in capsys.readouterr().out  # no DuckDB file yet

    config = load_config(config_path)
    accepted = ingest(read_rows(batch), str(batch), batch.name).accepted
    [first, *rest] = plan_batch(accepted, config, batch.name).pool_calls
    Storage(config.resolve(config.paths.duckdb_path)).save_calls(
        [{"call_id": first, "model": "m", "request": "{}", "response": "r"}]
    )
    assert main(["estimate", str(batch), "--config", str(config_path)]) == 0
    assert f"already cached: 1 of {len(rest) + 1} pool requests" in capsys.readouterr().out


def test_estimate_reads_the_configured_instruction_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = write_config(
        tmp_path, input={"instruction_field": "prompt", "system_prompt_field": "system"}
    )
    batch = tmp_path / "batch.jsonl"
    batch.write_text(
        '{"prompt": "Name a prime."}\n{"prompt": "Name a colour.", "system": "Be brief."}\n'
    )
    assert main(["estimate", str(batch), "--config", str(config_path)]) == 0
    pool = sum(member.num_completions for member in load_config(config_path).generation.pool)
    [row] = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("completions ")
    ]
    assert row.split()[1] == str(2 * pool)
