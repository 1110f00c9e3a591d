"""A run killed mid-stage resumes without paying twice; two runs at once share one DuckDB."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from prefgen_dagster.defs.pipeline_run import materialize_batch
from prefgen_dagster.storage.store import Storage
from tests.conftest import CLEAN_ENV

from .conftest import drop_batch, write_config
from .test_pipeline_vllm import mt_bench_lines

SLOW_POOL = {  # long answers, so the kill lands inside the stage (default engine settings)
    "seed": 11,
    "pool": [
        {"model": "tiny-qwen2", "num_completions": 2, "sampling": {"max_tokens": 400}},
        {"model": "tiny-llama", "num_completions": 2, "sampling": {"max_tokens": 400}},
    ],
}


def cli_run(batch: Path, config: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "prefgen_dagster.cli",
        "run",
        str(batch),
        "--config",
        str(config),
    ]
    return subprocess.Popen(
        command,
        env=CLEAN_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def cached_ids(db: Path) -> set[str]:
    return set(Storage(db).query("SELECT call_id FROM llm_calls")["call_id"])


def journaled_ids(db: Path) -> set[str]:
    """The answers in the journals (some may be in the cache already); a line being written
    is left out."""
    rows = [
        json.loads(line)
        for path in Path(f"{db}.journal").glob("*.jsonl")
        for line in path.read_text().splitlines()
        if line.endswith("}")
    ]
    return {row["call_id"] for row in rows if "error" not in row}


def batch_tables(db: Path, batch_id: str) -> dict[str, list[tuple]]:
    tables = ("completions", "evolved_completions", "ratings", "dpo_pairs")
    with duckdb.connect(str(db), read_only=True) as con:
        return {
            t: con.execute(
                f"SELECT * EXCLUDE (batch_id) FROM {t} WHERE batch_id = ? ORDER BY ALL", [batch_id]
            ).fetchall()
            for t in tables
        }


@pytest.mark.slow
def test_sigkill_mid_generation_then_resume(tmp_path: Path, tiny_models: Path) -> None:
    lines = mt_bench_lines(6)
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    for workdir in (killed_dir, clean_dir):
        workdir.mkdir()
        write_config(workdir, tiny_models, generation=SLOW_POOL)
        drop_batch(workdir, "six.jsonl", lines)
    killed_db = killed_dir / "data" / "prefgen.duckdb"

    process = cli_run(killed_dir / "data" / "inbox" / "six.jsonl", killed_dir / "prefgen.yaml")
    deadline = time.monotonic() + 300
    try:
        # Answers of the pool stage are arriving (journaled at once, cached every few s).
        while len(journaled_ids(killed_db)) < 4:
            assert process.poll() is None, process.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no answer arrived in time"
            time.sleep(0.1)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    # Every answer that arrived survives: in the cache, or in the journal of the dead process
    # (the rerun moves it into the cache before it asks anything).
    survived = len(cached_ids(killed_db) | journaled_ids(killed_db))
    assert 4 <= survived < 24, "the kill should land inside the 24-request pool stage"

    with dg.instance_for_test() as instance:
        resumed, _ = materialize_batch(killed_dir / "prefgen.yaml", "six.jsonl", instance)
        assert resumed.success
        [pool] = resumed.asset_materializations_for_node("completions")
        assert pool.metadata["llm_cache_hits"].value == survived
        assert pool.metadata["llm_engine_calls"].value == 24 - survived

        uninterrupted, _ = materialize_batch(clean_dir / "prefgen.yaml", "six.jsonl", instance)
        assert uninterrupted.success
    assert batch_tables(killed_db, "six.jsonl") == batch_tables(
        clean_dir / "data" / "prefgen.duckdb", "six.jsonl"
    )


@pytest.mark.slow
def test_two_runs_at_once_share_one_duckdb_file(tmp_path: Path, tiny_models: Path) -> None:
    config = write_config(tmp_path, tiny_models)
    first = drop_batch(tmp_path, "first.jsonl", mt_bench_lines(3))
    second = drop_batch(tmp_path, "second.jsonl", mt_bench_lines(6)[3:])
    runs = [cli_run(first, config), cli_run(second, config)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    for run, output, name in zip(runs, outputs, ("first", "second"), strict=True):
        assert run.returncode == 0, output[-3000:]
        assert f"batch {name}.jsonl: succeeded" in output
        assert "Could not set lock" not in output
    with duckdb.connect(str(tmp_path / "data" / "prefgen.duckdb"), read_only=True) as con:
        counts = dict(
            con.execute("SELECT batch_id, count(*) FROM completions GROUP BY 1").fetchall()
        )
    assert counts == {"first.jsonl": 12, "second.jsonl": 12}
