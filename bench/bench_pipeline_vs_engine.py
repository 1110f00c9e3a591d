"""Benchmark: the same LLM work through the prefgen pipeline and straight through vLLM.

1. The pipeline runs one batch of MT-Bench instructions end to end (`prefgen_dagster.cli.
   run_batch`: real Dagster `materialize` calls, DuckDB writes, one engine per stage and
   model) on a fresh DuckDB file.
2. It runs again on the same file: every request is a cache hit, so no engine is called.
3. A child process of this script reads every request back from the `llm_calls` table and
   replays them with `vllm.LLM.chat`: one engine per model, all of its requests in one call.

Both sides are timed by wall clock with module imports done beforehand and engine start-ups
included; the direct side's pure `chat()` time is reported as well. The direct side knows
every request up front, while the pipeline's stages must run one after another (evolution
needs the completions, judging needs both), so the direct figure is an idealized lower bound.

    .venv/bin/python bench/bench_pipeline_vs_engine.py --limit 80
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Must be set before vllm is imported anywhere in this process (in-process engine core).
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# vLLM edits os.environ when an engine starts (LD_PRELOAD, thread and worker settings); the
# direct replay's child process gets the environment as it was before, like this process had.
START_ENV = dict(os.environ)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mt-bench-80.jsonl"
BATCH_NAME = "bench-mt-bench.jsonl"


@dataclass
class CallLog:
    """What the pipeline's `llm_calls` table says about the engine work it did."""

    calls: int
    prompt_tokens: int
    completion_tokens: int
    generate_seconds: float  # sum of latency_s: each chunk's chat() time, spread over its rows


@dataclass
class DirectResult:
    """The direct replay's figures (written as JSON by the child process)."""

    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_seconds: float
    generate_seconds: float
    cpu_seconds: float
    startup_seconds: dict[str, float]
    identical_texts: int


@dataclass
class PipelineRun:
    """One `run_batch`: wall and CPU seconds of this process, and whether it succeeded."""

    seconds: float
    cpu_seconds: float
    ok: bool


# --- input -----------------------------------------------------------------------------------


def load_instructions(path: Path, limit: int | None, repeat: int) -> list[dict[str, str]]:
    """The first `limit` instructions of `path`, `repeat` times over.

    Copies after the first get a " (variant k)" suffix, or ingestion would deduplicate them.
    """
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    rows = rows[:limit] if limit is not None else rows
    records = []
    for k in range(repeat):
        suffix = f" (variant {k})" if k else ""
        for row in rows:
            records.append({"id": f"{row['id']}#{k}", "instruction": row["instruction"] + suffix})
    return records


def prepare_workdir(
    workdir: Path, config_src: Path, records: list[dict[str, str]]
) -> tuple[Path, Path]:
    """Tiny models, a copy of the config and the batch file in `workdir`; (config, batch).

    The config is copied so that its relative paths (DuckDB file, inbox, ./models) resolve
    inside `workdir`.
    """
    from prefgen_dagster.local_models.tiny import make_tiny_models

    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prefgen.yaml"
    shutil.copyfile(config_src, config_path)
    duckdb_path = duckdb_file(config_path)
    if duckdb_path.exists():
        raise SystemExit(f"{duckdb_path} exists: the benchmark needs a fresh DuckDB file")
    make_tiny_models(workdir)
    batch = workdir / "input" / BATCH_NAME
    batch.parent.mkdir(exist_ok=True)
    batch.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return config_path, batch


def warm_imports() -> None:
    """Import Dagster, the assets and vLLM now, so that neither side's timing includes them."""
    import dagster  # noqa: F401
    import vllm  # noqa: F401

    import prefgen_dagster.defs.assets  # noqa: F401
    import prefgen_dagster.defs.checks  # noqa: F401


# --- pipeline side ---------------------------------------------------------------------------


def duckdb_file(config_path: Path) -> Path:
    from prefgen_dagster.config import load_config

    config = load_config(config_path)
    return config.resolve(config.paths.duckdb_path)


def cpu_seconds() -> float:
    """CPU time of this process so far: with wall time, it shows when other load interfered."""
    times = os.times()
    return times.user + times.system


def time_pipeline(batch: Path, config_path: Path) -> PipelineRun:
    """One `run_batch` (all stages + export): wall and CPU seconds, and whether it succeeded."""
    from prefgen_dagster.cli import run_batch

    started, cpu = time.perf_counter(), cpu_seconds()
    status = run_batch(batch, config_path)
    return PipelineRun(time.perf_counter() - started, cpu_seconds() - cpu, status == 0)


def read_call_log(db_path: Path) -> CallLog:
    """Totals over `llm_calls`. On a fresh file every row is one engine call of the run."""
    import duckdb

    con = duckdb.connect(str(db_path), read_only=True)
    try:
        row = con.execute(
            "SELECT count(*), coalesce(sum(prompt_tokens), 0), "
            "coalesce(sum(completion_tokens), 0), coalesce(sum(latency_s), 0) FROM llm_calls"
        ).fetchone()
    finally:
        con.close()
    return CallLog(int(row[0]), int(row[1]), int(row[2]), float(row[3]))


# --- direct side (runs in a child process) ---------------------------------------------------


def read_requests(db_path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every recorded request grouped by model, models and requests in the pipeline's order."""
    import duckdb

    con = duckdb.connect(str(db_path), read_only=True)
    try:
        rows = con.execute(
            "SELECT model, request, response FROM llm_calls ORDER BY created_at, rowid"
        ).fetchall()
    finally:
        con.close()
    grouped: dict[str, list[dict[str, Any]]] = {}
    for model, request, response in rows:
        grouped.setdefault(model, []).append({**json.loads(request), "response": response})
    return grouped


def sampling_params(request: dict[str, Any]):
    """The request's `SamplingParams`, built as `engines/vllm_offline.py` builds them."""
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    schema = request["json_schema"]
    sampling = request["sampling"]
    return SamplingParams(
        temperature=sampling["temperature"],
        top_p=sampling["top_p"],
        max_tokens=sampling["max_tokens"],
        seed=request["seed"],
        structured_outputs=StructuredOutputsParams(json=schema) if schema is not None else None,
    )


def open_llm(config_path: Path, identity: str):
    """A `vllm.LLM` for the model the config writes as `identity`, with the config's kwargs."""
    from vllm import LLM

    from prefgen_dagster.config import load_config

    config = load_config(config_path)
    name = next(n for n, spec in config.models.items() if spec.path == identity)
    spec = config.models[name]
    if spec.backend != "vllm":
        raise SystemExit(f"model {name}: backend {spec.backend!r}; this benchmark needs vllm")
    return LLM(
        model=config.model_location(name),
        dtype=spec.dtype,
        max_model_len=spec.max_model_len,
        seed=0,
        **spec.engine_kwargs,
    )


def replay(db_path: Path, config_path: Path) -> DirectResult:
    """Send every recorded request to vLLM, one engine and one `chat()` call per model."""
    import gc

    grouped = read_requests(db_path)  # before any timing: the pipeline already paid for this
    result = DirectResult(0, 0, 0, 0.0, 0.0, 0.0, {}, 0)
    started, cpu = time.perf_counter(), cpu_seconds()
    for identity, requests in grouped.items():
        began = time.perf_counter()
        llm = open_llm(config_path, identity)
        result.startup_seconds[identity] = time.perf_counter() - began
        params = [sampling_params(r) for r in requests]
        began = time.perf_counter()
        messages = [r["messages"] for r in requests]
        outputs = llm.chat(messages, sampling_params=params, use_tqdm=False)
        result.generate_seconds += time.perf_counter() - began
        for request, output in zip(requests, outputs, strict=True):
            completion = output.outputs[0]
            result.requests += 1
            result.prompt_tokens += len(output.prompt_token_ids or [])
            result.completion_tokens += len(completion.token_ids)
            result.identical_texts += completion.text == request["response"]
        del llm
        gc.collect()
    result.total_seconds = time.perf_counter() - started
    result.cpu_seconds = cpu_seconds() - cpu
    return result


def replay_in_child(db_path: Path, config_path: Path, out: Path) -> DirectResult:
    """Run `replay` in a fresh Python process, so it shares no engine state with the pipeline."""
    command = [sys.executable, __file__, "--replay-db", str(db_path), "--config", str(config_path)]
    subprocess.run([*command, "--replay-out", str(out)], check=True, env=START_ENV)
    return DirectResult(**json.loads(out.read_text()))


# --- report ----------------------------------------------------------------------------------


def _rate(tokens: int, seconds: float) -> str:
    return f"{tokens / seconds:,.0f}" if seconds > 0 and tokens else "-"


def _row(label: str, seconds: float, reference: float, cpu: float | None, tokens: tuple[int, int]):
    """One table line: seconds, ratio to `reference`, CPU seconds, completion and all tok/s."""
    ratio = f"{seconds / reference:.2f}x" if reference > 0 else "-"
    cpu_text = f"{cpu:.1f}" if cpu is not None else "-"
    completion, total = tokens
    return (
        f"{label:<40}{seconds:>9.1f}{ratio:>11}{cpu_text:>9}"
        f"{_rate(completion, seconds):>13}{_rate(total, seconds):>11}"
    )


def print_report(
    instructions: int,
    log: CallLog,
    cold: PipelineRun,
    warm: PipelineRun,
    warm_calls: int,
    direct: DirectResult,
) -> None:
    pipe_tokens = (log.completion_tokens, log.prompt_tokens + log.completion_tokens)
    direct_tokens = (direct.completion_tokens, direct.prompt_tokens + direct.completion_tokens)
    total, generate = direct.total_seconds, direct.generate_seconds
    print(f"\n== prefgen pipeline vs direct vLLM: {instructions} instructions ==")
    for label, mine, theirs in (
        ("LLM requests", log.calls, direct.requests),
        ("prompt tokens", log.prompt_tokens, direct.prompt_tokens),
        ("completion tokens", log.completion_tokens, direct.completion_tokens),
    ):
        print(f"{label:<22}{mine:>10,}  (direct replay: {theirs:,})")
    print(f"{'identical outputs':<22}{direct.identical_texts:>10,}  of {direct.requests:,}\n")
    header = f"{'':<40}{'seconds':>9}{'vs direct':>11}{'cpu s':>9}"
    header += f"{'compl tok/s':>13}{'all tok/s':>11}"
    print(header + "\n" + "-" * len(header))
    rows = [
        ("pipeline, cold cache (wall)", cold.seconds, total, cold.cpu_seconds, pipe_tokens),
        ("direct vLLM (wall, with engine start)", total, total, direct.cpu_seconds, direct_tokens),
        ("pipeline, engine generate only", log.generate_seconds, generate, None, pipe_tokens),
        ("direct vLLM, chat() only", generate, generate, None, direct_tokens),
        ("pipeline, warm cache (wall)", warm.seconds, 0.0, warm.cpu_seconds, (0, 0)),
    ]
    for row in rows:
        print(_row(*row))
    print(
        f"\nratio pipeline/direct: {cold.seconds / total:.2f}x wall, "
        f"{log.generate_seconds / generate:.2f}x generate-only"
    )
    startups = ", ".join(f"{m} {s:.1f} s" for m, s in direct.startup_seconds.items())
    print(f"direct engine start-ups: {startups}")
    print(f"warm-cache rerun: {warm_calls} engine calls, {warm.seconds:.1f} s")
    print(
        "note: the direct side replays every recorded request per model in one chat() call;\n"
        "      the pipeline runs its stages in sequence (evolution needs the completions,\n"
        "      judging needs both) and starts an engine per stage and model, so the direct\n"
        "      figure is an idealized lower bound. Module imports are excluded on both sides.\n"
        "      cpu s well below seconds means other load on the machine slowed that run."
    )


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from prefgen_dagster.cli import TINY_CONFIG

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="instructions (JSONL)")
    parser.add_argument("--limit", type=int, default=None, help="use the first N instructions")
    parser.add_argument("--repeat", type=int, default=1, help="repeat them K times (variants)")
    parser.add_argument("--config", type=Path, default=TINY_CONFIG, help="pipeline config")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    parser.add_argument("--replay-db", type=Path, help=argparse.SUPPRESS)  # child process mode
    parser.add_argument("--replay-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--limit and --repeat must be at least 1")
    return args


def run_benchmark(args: argparse.Namespace, workdir: Path) -> int:
    records = load_instructions(args.data, args.limit, args.repeat)
    config_path, batch = prepare_workdir(workdir, args.config, records)
    db_path = duckdb_file(config_path)
    warm_imports()

    cold = time_pipeline(batch, config_path)
    log = read_call_log(db_path)
    warm = time_pipeline(batch, config_path)
    warm_calls = read_call_log(db_path).calls - log.calls  # each engine call adds a row
    direct = replay_in_child(db_path, config_path, workdir / "direct.json")

    print_report(len(records), log, cold, warm, warm_calls, direct)
    if not (cold.ok and warm.ok):
        print("warning: a pipeline run did not succeed (see its summary above)")
    return 0 if cold.ok and warm.ok else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replay_db is not None:
        import vllm  # noqa: F401  (imported before the clock starts, as in the parent)

        result = replay(args.replay_db, args.config)
        args.replay_out.write_text(json.dumps(asdict(result)))
        return 0
    if args.workdir is not None:
        return run_benchmark(args, args.workdir)
    with tempfile.TemporaryDirectory(prefix="prefgen-bench-") as tmp:
        return run_benchmark(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
