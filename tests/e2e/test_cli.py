"""The `prefgen` command as a user runs it."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from prefgen_dagster.local_models.tiny import make_tiny_model
from tests.conftest import CLEAN_ENV

from .conftest import exported_pairs, write_config
from .test_pipeline_vllm import mt_bench_lines


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_tiny_models_are_deterministic(tmp_path: Path) -> None:
    first = make_tiny_model(tmp_path / "a", arch="llama", seed=7)
    second = make_tiny_model(tmp_path / "b", arch="llama", seed=7)
    other = make_tiny_model(tmp_path / "c", arch="llama", seed=8)
    assert digests(first) == digests(second)
    assert digests(first)["model.safetensors"] != digests(other)["model.safetensors"]
    config = json.loads((first / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["hidden_size"] // config["num_attention_heads"] >= 32


@pytest.mark.slow
def test_prefgen_run_prints_summary(tmp_path: Path, tiny_models: Path) -> None:
    config_path = write_config(tmp_path, tiny_models)
    source = tmp_path / "three.jsonl"
    source.write_text("\n".join(mt_bench_lines(3)) + "\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "prefgen_dagster.cli",
            "run",
            str(source),
            "--config",
            str(config_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={key: value for key, value in CLEAN_ENV.items() if key != "DAGSTER_HOME"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "batch three.jsonl: succeeded" in out
    assert re.search(r"completions\s+completions\s+12\s+12\s+0", out)
    assert re.search(r"evolved_completions\s+evolved_completions\s+12\s+12\s+0", out)
    assert re.search(r"ratings\s+ratings\s+24\s+\d+\s+0", out)
    assert (tmp_path / "data" / "inbox" / "three.jsonl").exists()
    exported = re.search(r"preference_dataset: (\d+) pairs exported", out)
    assert exported
    # tiny.yaml measures no labels (random models), and the summary says so.
    assert "Label quality" in out
    assert "WARNING: canaries are off, so the judge's accuracy is not measured" in out
    dataset = exported_pairs(tmp_path)
    assert len(dataset) == int(exported.group(1))
    # vLLM's own logs went to a file, not to the terminal.
    engine_log = tmp_path / "data" / "engines.log"
    assert f"Engine logs: {engine_log}" in out
    assert "Resolved architecture" in engine_log.read_text()
    assert "Resolved architecture" not in out + done.stderr
    # The batch run and the export run are kept in the instance beside the DuckDB file.
    home = (tmp_path / "data" / "dagster").resolve()
    assert f"Runs:        {home}" in out
    assert f"DAGSTER_HOME={home} " in out
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert len(instance.get_runs()) == 2
    finally:
        instance.dispose()
