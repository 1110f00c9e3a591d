"""Benchmark: peak memory of `prefgen run` (or `prefgen estimate`) on a large file, without
the hours of generation a real run of it takes.

Every model of the config (`--config`, default `prefgen_dagster/tiny.yaml`: its models'
tokenizers count the tokens) is turned into an OpenAI-compatible model whose two servers are
closed ports on 127.0.0.1, with no retries and a short deadline: each request fails at once
(the servers are soon taken out, and the rest fail as `ServersCoolingDown`). So the run does
everything else at full size: the estimate's plan of the whole batch, ingest, Dagster, the
generation stage's plans, requests and rows, the DuckDB writes, the checks and the summary;
later stages have no answers to work on. `--one-completion` draws one pool member with one
completion per instruction (a quarter of the requests of tiny.yaml's 2 x 2).

The figure is the child process's peak RSS (its `wait4` rusage's `ru_maxrss`), what
`/usr/bin/time -v` reports as "Maximum resident set size". The tiny models are made in a child
of their own: Linux counts the parent's RSS at the fork in the child's peak.

    .venv/bin/python bench/bench_memory.py --count 100000 --one-completion
    .venv/bin/python bench/bench_memory.py --count 100000 --estimate
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from bench_pipeline_vs_engine import DEFAULT_DATA, load_instructions

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "prefgen_dagster" / "tiny.yaml"


def closed_ports(count: int) -> list[int]:
    """Ports on 127.0.0.1 that nothing listens on (bound for a moment, then let go)."""
    ports = []
    for _ in range(count):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    return ports


def failing_config(source: Path, one_completion: bool) -> dict[str, Any]:
    """`source` with every model served by closed ports: each request fails at once."""
    config = yaml.safe_load(source.read_text())
    urls = [f"http://127.0.0.1:{port}/v1" for port in closed_ports(2)]
    for spec in config["models"].values():
        for vllm_only in ("dtype", "engine_kwargs"):
            spec.pop(vllm_only, None)
        spec.update(
            backend="openai",
            base_urls=urls,
            max_retries=0,
            max_concurrency=64,
            deadline_s=0.05,
            cooldown_s=600,
            max_cooldown_s=600,
        )
    if one_completion:
        config["generation"]["models_per_instruction"] = 1
        for member in config["generation"]["pool"]:
            member["num_completions"] = 1
    return config


def measure(workdir: Path, count: int, command: str, one_completion: bool) -> int:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    # The models' folders (their tokenizers count the tokens).
    make = "import sys; from pathlib import Path; from prefgen_dagster.local_models.tiny import "
    make += "make_tiny_models; make_tiny_models(Path(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", make, str(workdir)], env=env, check=True)
    config_path = workdir / "prefgen.yaml"
    config_path.write_text(yaml.safe_dump(failing_config(TINY_CONFIG, one_completion)))
    batch = workdir / "bench-memory.jsonl"
    records = load_instructions(DEFAULT_DATA, None, count)
    batch.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    argv = [sys.executable, "-m", "prefgen_dagster.cli", command, str(batch)]
    started = time.perf_counter()
    child = subprocess.Popen(
        [*argv, "--config", str(config_path)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    peak_mib = usage.ru_maxrss / 1024  # KiB on Linux
    pool = "one completion per instruction" if one_completion else "the config's pool"
    print(
        f"prefgen {command}, {count} instructions ({pool}): peak RSS {peak_mib:,.0f} MiB, "
        f"{seconds:.0f} s (exit code {child.returncode})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="instructions in the file")
    parser.add_argument("--estimate", action="store_true", help="prefgen estimate, not run")
    parser.add_argument("--one-completion", action="store_true", help="one per instruction")
    parser.add_argument("--workdir", type=Path, help="kept afterwards (default: a temp folder)")
    args = parser.parse_args(argv)
    command = "estimate" if args.estimate else "run"
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return measure(args.workdir, args.count, command, args.one_completion)
    workdir = Path(tempfile.mkdtemp(prefix="prefgen-bench-memory-"))
    try:
        return measure(workdir, args.count, command, args.one_completion)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
