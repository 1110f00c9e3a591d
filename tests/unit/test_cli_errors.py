"""`prefgen` says what is wrong in one line, naming the file, before doing any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from prefgen_dagster.cli import TINY_CONFIG, main


def test_an_unusable_duckdb_path_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["paths"] = {"duckdb_path": str(blocker / "prefgen.duckdb")}
    config_path = tmp_path / "prefgen.yaml"
    config_path.write_text(yaml.safe_dump(config))
    batch = tmp_path / "batch.jsonl"
    batch.write_text('{"instruction": "hi"}\n')

    assert main(["run", str(batch), "--config", str(config_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prefgen: ") and len(err.splitlines()) == 1
    assert f"{blocker}/prefgen.duckdb: cannot create the DuckDB file's lock" in err
