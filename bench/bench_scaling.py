"""Benchmark: one batch with its LLM stages in-process, on a Ray cluster, and on one and
two OpenAI-compatible vLLM servers behind one model (the fleet), side by side.

Every side runs the whole pipeline (`run_batch`) on a fresh DuckDB file with one tiny model
in every role (pool, rewrites, judge), so the three make the same requests. Ray runs with
`ray.address: local` (a Ray instance started for this process: GCS, raylet, one actor per
model, answers through Parquet shard files); the servers are `vllm serve` processes on
127.0.0.1. On a 2-core machine none of them can be faster than in-process: what the table
shows is what each way of running costs per request on top of the engine.

    .venv/bin/python bench/bench_scaling.py --count 40
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test helpers that start vLLM servers

from bench_pipeline_vs_engine import (  # noqa: E402
    DEFAULT_DATA,
    load_instructions,
    prepare_workdir,
    read_call_log,
    read_requests,
    time_pipeline,
    warm_imports,
)

MODEL = "tiny-qwen2"
# (name, vLLM servers behind the model: 0 = a vllm backend).
SERVER_CONCURRENCY = 256
SIDES = (("in-process", 0), ("ray (local)", 0), ("one server", 1), ("two servers", 2))


def use_one_model(config_path: Path, model: dict, ray: dict | None) -> None:
    """Rewrite the workdir's copy of tiny.yaml: `MODEL` (as `model` says) in every role,
    and the `ray` section if given."""
    config = yaml.safe_load(config_path.read_text())
    config["models"] = {MODEL: model}
    for member in config["generation"]["pool"]:
        member["model"] = MODEL
    config["evol_quality"]["model"] = MODEL
    config["judge"]["models"] = [MODEL]
    if ray is not None:
        config["ray"] = ray
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def replay_direct(db: Path, urls: list[str]) -> float:
    """Seconds to send every request the run made straight to the servers (no prefgen: one
    async client per server, requests alternating between them, all in flight at once)."""
    import asyncio

    import openai

    requests = [request for model in read_requests(db).values() for request in model]

    async def send_all() -> None:
        clients = [openai.AsyncOpenAI(base_url=url, api_key="none") for url in urls]
        await asyncio.gather(
            *(
                clients[index % len(clients)].chat.completions.create(
                    model=MODEL,
                    messages=request["messages"],
                    temperature=request["sampling"]["temperature"],
                    top_p=request["sampling"]["top_p"],
                    max_tokens=request["sampling"]["max_tokens"],
                    seed=request["seed"],
                )
                for index, request in enumerate(requests)
            )
        )
        for client in clients:
            await client.close()

    began = time.perf_counter()
    asyncio.run(send_all())
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    from prefgen_dagster.bundled import TINY_CONFIG
    from tests.e2e.servers import vllm_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40, help="instructions in the batch")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    args = parser.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="prefgen-scaling-"))
    records = load_instructions(DEFAULT_DATA, None, args.count)
    warm_imports()
    base = yaml.safe_load(TINY_CONFIG.read_text())["models"][MODEL]
    # One small run first, untimed: what the first run in a process pays once (Dagster's
    # instance, plotting's fonts) is then not charged to the first side.
    config_path, batch = prepare_workdir(root / "warm-up", TINY_CONFIG, records[:4])
    use_one_model(config_path, dict(base), None)
    time_pipeline(batch, config_path)
    rows = []
    direct: dict[str, float] = {}  # side -> seconds of the same requests sent straight
    for side, servers in SIDES:
        workdir = root / side.split()[0]
        config_path, batch = prepare_workdir(workdir, TINY_CONFIG, records)
        with ExitStack() as stack:
            model, ray = dict(base), None
            if side.startswith("ray"):
                ray = {"address": "local"}
            if servers:
                urls = [
                    stack.enter_context(
                        vllm_server(workdir / "models" / MODEL, MODEL, workdir / f"server{i}.log")
                    )
                    for i in range(servers)
                ]
                # As many in flight per server as vLLM batches by default (max_num_seqs).
                model = {
                    "path": MODEL,
                    "backend": "openai",
                    "base_urls": urls,
                    "max_concurrency": SERVER_CONCURRENCY,
                }
            use_one_model(config_path, model, ray)
            began = time.perf_counter()
            run = time_pipeline(batch, config_path)
            wall = time.perf_counter() - began
            calls = read_call_log(workdir / "data" / "prefgen.duckdb").calls
            rows.append((side, wall, calls, run.parts, run.ok))
            if servers:
                direct[side] = replay_direct(workdir / "data" / "prefgen.duckdb", urls)
    print(f"\n== LLM stages in-process vs Ray vs servers: {args.count} instructions ==")
    print(f"{'':16}{'wall s':>8}{'requests':>10}{'start-ups s':>13}{'generate s':>12}"
          f"{'rest s':>8}{'overhead/request':>18}")  # fmt: skip
    reference = rows[0][1] - rows[0][3]["engine start-ups"]
    for side, wall, calls, parts, ok in rows:
        starts, generate = parts["engine start-ups"], parts["engine generate"]
        overhead = (wall - starts - reference) / calls * 1000 if calls else 0.0
        print(
            f"{side:16}{wall:8.1f}{calls:10,}{starts:13.1f}{generate:12.1f}"
            f"{wall - starts - generate:8.1f}{overhead:15.1f} ms{'' if ok else '  (FAILED)'}"
        )
    print(
        "overhead/request: (wall - start-ups) minus the same for in-process, per request.\n"
        "start-ups: vLLM in-process; Ray: connecting and the actors (a new process imports\n"
        "vLLM); the servers are started before the run (not counted). generate: the engine\n"
        "calls (for the servers: HTTP, up to 256 in flight per server)."
    )
    for side, seconds in direct.items():
        print(
            f"{side}: the same requests sent straight to the server(s), no prefgen: "
            f"{seconds:.1f} s (their prompts are in the servers' prefix cache by then)"
        )
    return 0 if all(row[4] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
