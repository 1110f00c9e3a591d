"""`prefgen run` on a dataset, as a user with a Hub-style dataset runs it: a local folder laid
out like a Hub dataset repo (two configs, parquet shards, two splits), one config and split
through every stage on vLLM to the export; a changed shard is a new batch beside the old one;
offline, a Hub name that is not cached is one line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.conftest import CLEAN_ENV
from tests.unit.input.hub_folders import ROWS_PER_SHARD, SHARDS, hub_folder, write_shard

from .conftest import exported_pairs, write_config


def prefgen(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in CLEAN_ENV.items() if key != "DAGSTER_HOME"}
    return subprocess.run(
        [sys.executable, "-m", "prefgen_dagster.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**environment, **env},
    )


def batches(workdir: Path) -> dict[str, tuple[int, int, str]]:
    with duckdb.connect(str(workdir / "data" / "prefgen.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT batch_id, accepted_rows, rejected_rows, dataset FROM batches"
        ).fetchall()
    return {batch: (accepted, rejected, dataset) for batch, accepted, rejected, dataset in rows}


@pytest.mark.slow
def test_a_dataset_split_is_a_batch_and_its_next_revision_another(
    tmp_path: Path, tiny_models: Path
) -> None:
    config = str(write_config(tmp_path, tiny_models))
    repo = hub_folder(tmp_path / "questions")
    split = ("--subset", "hard", "--split", "test")
    first = prefgen("run", str(repo), *split, "--config", config)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    [(name, (accepted, rejected, origin))] = batches(tmp_path).items()
    assert re.fullmatch(r"questions\.hard\.test\.[0-9a-f]{12}\.parquet", name)
    assert (accepted, rejected) == (SHARDS * ROWS_PER_SHARD, 0)
    assert f'"name": "{repo}"' in origin and '"config": "hard"' in origin
    assert f"batch {name}: succeeded" in first.stdout
    pairs = exported_pairs(tmp_path)
    assert len(pairs) > 0 and {row[0]["content"] for row in pairs["prompt"]} <= {
        f"In hard test set {shard}, question {row}: why do leaves change colour?"
        for shard in range(SHARDS)
        for row in range(ROWS_PER_SHARD)
    }
    card = (tmp_path / "data" / "export" / "README.md").read_text()
    assert f"  * {name}: from `{repo}`, config `hard`, split `test`, revision `" in card

    # The dataset changes: one shard gets new questions. A new revision, a new batch; the
    # unchanged shard's questions are already another batch's (seen before).
    new = [f"A new question {i}: how do tides work?" for i in range(ROWS_PER_SHARD)]
    write_shard(repo, "hard", "test", 1, new)
    second = prefgen("run", str(repo), *split, "--config", config)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    found = batches(tmp_path)
    [newer] = set(found) - {name}
    assert found[name][:2] == (SHARDS * ROWS_PER_SHARD, 0)  # the old batch keeps its rows
    assert found[newer][:2] == (ROWS_PER_SHARD, ROWS_PER_SHARD)

    offline = prefgen("run", "hf://datasets/nobody/nothing", "--config", config, HF_HUB_OFFLINE="1")
    assert offline.returncode == 2
    [line] = offline.stderr.strip().splitlines()
    assert line.startswith("prefgen: hf://datasets/nobody/nothing: cannot be loaded: ")
