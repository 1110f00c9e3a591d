"""Benchmark: the same LLM work through the prefgen pipeline and straight through vLLM.

1. The pipeline runs one batch of MT-Bench instructions end to end (`prefgen_dagster.cli.
   run_batch`: real Dagster `materialize` calls, DuckDB writes, one engine per model for the
   run) on a fresh DuckDB file. Where its time went is read from the Dagster instance
   (`breakdown.py`).
2. It runs again on the same file: every request is a cache hit, so no engine is called.
3. `--grow P`: P % more instructions are added to the batch file and it runs again: what
   growing a finished batch costs. `--grow-runs K` (default 3) grows it K times in a row
   and reports the median: one run of ~15 s varies by about 2 s on a shared machine.
4. A child process of this script reads every request back from the `llm_calls` table and
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
    peak_rss_mb: float = 0.0


@dataclass
class PipelineRun:
    """One `run_batch`: wall and CPU seconds of this process, whether it succeeded, and
    where its time went (seconds per part, see `breakdown.py`)."""

    seconds: float
    cpu_seconds: float
    ok: bool
    parts: dict[str, float]


@dataclass
class Growth:
    """A run after adding `added` instructions to a finished batch, and its engine calls."""

    added: int
    run: PipelineRun
    calls: int


# --- input -----------------------------------------------------------------------------------


def load_instructions(path: Path, limit: int | None, count: int) -> list[dict[str, str]]:
    """`count` instructions: the first `limit` of `path`, over and over.

    Copies after the first get a " (variant k)" suffix, or ingestion would deduplicate them.
    """
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    rows = rows[:limit] if limit is not None else rows
    records = []
    for index in range(count):
        row, k = rows[index % len(rows)], index // len(rows)
        suffix = f" (variant {k})" if k else ""
        records.append({"id": f"{row['id']}#{k}", "instruction": row["instruction"] + suffix})
    return records


def prepare_workdir(
    workdir: Path, config_src: Path, records: list[dict[str, str]]
) -> tuple[Path, Path]:
    """Tiny models, a copy of the config and the batch file in `workdir`; (config, batch).

    The config is copied so that its relative paths (DuckDB file, inbox, ./models) resolve
    inside `workdir`.
    """
    from prefgen_dagster.bundled import SMOLLM2_FOLDER
    from prefgen_dagster.local_models.packaged import make_smollm2
    from prefgen_dagster.local_models.tiny import make_tiny_models

    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prefgen.yaml"
    shutil.copyfile(config_src, config_path)
    duckdb_path = duckdb_file(config_path)
    if duckdb_path.exists():
        raise SystemExit(f"{duckdb_path} exists: the benchmark needs a fresh DuckDB file")
    make_tiny_models(workdir)
    if SMOLLM2_FOLDER in config_path.read_text():  # the real model (demo.yaml)
        make_smollm2(workdir / SMOLLM2_FOLDER)
    batch = workdir / "input" / BATCH_NAME
    batch.parent.mkdir(exist_ok=True)
    batch.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return config_path, batch


def warm_imports() -> None:
    """Import Dagster, the assets and vLLM now, so that neither side's timing includes them."""
    import dagster  # noqa: F401
    from vllm import LLM  # noqa: F401  (`import vllm` alone defers this ~2.5 s import)

    import prefgen_dagster.defs.assets  # noqa: F401
    import prefgen_dagster.defs.checks  # noqa: F401


# --- pipeline side ---------------------------------------------------------------------------


def duckdb_file(config_path: Path) -> Path:
    from prefgen_dagster.config import load_config

    config = load_config(config_path, check_environment=False)  # models come later
    return config.resolve(config.paths.duckdb_path)


def cpu_seconds() -> float:
    """CPU time of this process so far: with wall time, it shows when other load interfered."""
    times = os.times()
    return times.user + times.system


def peak_rss_mb() -> float:
    """The most memory this process has held so far: VmHWM (getrusage's maxrss would count
    the parent's peak in the child process)."""
    status = Path("/proc/self/status").read_text()
    [line] = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1]) / 1024


def time_pipeline(batch: Path, config_path: Path) -> PipelineRun:
    """One `run_batch` (all stages + export): its seconds, and where they went."""
    from breakdown import run_ids, time_by_part

    from prefgen_dagster.cli_run import run_batch
    from prefgen_dagster.config import load_config
    from prefgen_dagster.exits import EXIT_HELD_BACK

    config = load_config(config_path)
    dagster_home = config.resolve(config.paths.dagster_home)
    before = run_ids(dagster_home) if dagster_home.exists() else set()
    started, cpu = time.perf_counter(), cpu_seconds()
    status = run_batch(batch, config_path)
    seconds = time.perf_counter() - started
    parts = time_by_part(dagster_home, run_ids(dagster_home) - before, seconds)
    # A batch held back by its label gates (the real model's judge) ran to the end all the same.
    return PipelineRun(seconds, cpu_seconds() - cpu, status in (0, EXIT_HELD_BACK), parts)


def grow_batch(batch: Path, data: Path, limit: int | None, percent: float) -> int:
    """Append `percent` % more instructions (new variants) to the batch file; how many."""
    lines = batch.read_text(encoding="utf-8").splitlines()
    extra = max(1, round(len(lines) * percent / 100))
    records = load_instructions(data, limit, len(lines) + extra)[len(lines) :]
    with batch.open("a", encoding="utf-8") as out:
        out.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return extra


def read_call_log(db_path: Path) -> CallLog:
    """Totals over `llm_calls`. On a fresh file every row is one engine call of the run."""
    import duckdb

    con = duckdb.connect(str(db_path), read_only=True)
    try:
        row = con.execute(
            "SELECT count(*), coalesce(sum(prompt_tokens), 0), "
            "coalesce(sum(completion_tokens), 0) FROM llm_calls"
        ).fetchone()
    finally:
        con.close()
    return CallLog(int(row[0]), int(row[1]), int(row[2]))


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
    result.peak_rss_mb = peak_rss_mb()
    return result


def replay_in_child(db_path: Path, config_path: Path, out: Path) -> DirectResult:
    """Run `replay` in a fresh Python process, so it shares no engine state with the pipeline."""
    command = [sys.executable, __file__, "--replay-db", str(db_path), "--config", str(config_path)]
    subprocess.run([*command, "--replay-out", str(out)], check=True, env=START_ENV)
    return DirectResult(**json.loads(out.read_text()))


# --- report ----------------------------------------------------------------------------------


def _median_growth(grown: list[Growth]) -> Growth | None:
    """The growth run of median wall time (the upper one of two middles)."""
    ordered = sorted(grown, key=lambda growth: growth.run.seconds)
    return ordered[len(ordered) // 2] if ordered else None


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
    grown: list[Growth],
    direct: DirectResult | None,
    pipeline_rss_mb: float,
) -> None:
    pipe_tokens = (log.completion_tokens, log.prompt_tokens + log.completion_tokens)
    print(f"\n== prefgen pipeline vs direct vLLM: {instructions} instructions ==")
    for label, mine, theirs in (
        ("LLM requests", log.calls, direct and direct.requests),
        ("prompt tokens", log.prompt_tokens, direct and direct.prompt_tokens),
        ("completion tokens", log.completion_tokens, direct and direct.completion_tokens),
    ):
        replayed = f"  (direct replay: {theirs:,})" if direct else ""
        print(f"{label:<22}{mine:>10,}{replayed}")
    if direct:
        print(f"{'identical outputs':<22}{direct.identical_texts:>10,}  of {direct.requests:,}")
    header = f"\n{'':<40}{'seconds':>9}{'vs direct':>11}{'cpu s':>9}"
    header += f"{'compl tok/s':>13}{'all tok/s':>11}"
    print(header + "\n" + "-" * len(header))
    total = direct.total_seconds if direct else 0.0
    generate = direct.generate_seconds if direct else 0.0
    rows = [("pipeline, cold cache (wall)", cold.seconds, total, cold.cpu_seconds, pipe_tokens)]
    if direct:
        direct_tokens = (direct.completion_tokens, direct.prompt_tokens + direct.completion_tokens)
        rows += [
            ("direct vLLM (wall, with engine start)", total, total, direct.cpu_seconds,
             direct_tokens),
                ("pipeline, engine generate only", cold.parts["engine generate"], generate, None,
             pipe_tokens),
            ("direct vLLM, chat() only", generate, generate, None, direct_tokens),
        ]  # fmt: skip
    rows.append(("pipeline, warm cache (wall)", warm.seconds, 0.0, warm.cpu_seconds, (0, 0)))
    for growth in grown:
        rows.append((f"pipeline, +{growth.added} instructions (wall)", growth.run.seconds, 0.0,
                     growth.run.cpu_seconds, (0, 0)))  # fmt: skip
    for row in rows:
        print(_row(*row))
    median = _median_growth(grown)
    runs = {"cold": cold, "warm": warm} | ({"grown": median.run} if median else {})
    print(f"\nwhere the pipeline's time went (seconds){''.join(f'{n:>9}' for n in runs)}")
    for part in cold.parts:
        print(f"  {part:<56}" + "".join(f"{run.parts[part]:>9.1f}" for run in runs.values()))
    if direct:
        print(
            f"\nratio pipeline/direct: {cold.seconds / total:.2f}x wall, "
            f"{cold.parts['engine generate'] / generate:.2f}x generate-only"
        )
        startups = ", ".join(f"{m} {s:.1f} s" for m, s in direct.startup_seconds.items())
        print(f"direct engine start-ups: {startups}")
    print(f"pipeline engine start-ups: {cold.parts['engine start-ups']:.1f} s")
    rss = f"peak RSS: pipeline {pipeline_rss_mb:,.0f} MB"
    print(rss + (f", direct {direct.peak_rss_mb:,.0f} MB" if direct else ""))
    print(f"warm-cache rerun: {warm_calls} engine calls, {warm.seconds:.1f} s")
    for growth in grown:
        print(
            f"+{growth.added} instructions: {growth.calls} engine calls, {growth.run.seconds:.1f}"
            f" s = {100 * growth.run.seconds / cold.seconds:.1f} % of the cold run"
        )
    if median and len(grown) > 1:
        print(
            f"growth, median of {len(grown)} runs: {median.run.seconds:.1f} s = "
            f"{100 * median.run.seconds / cold.seconds:.1f} % of the cold run"
            " (its parts are the 'grown' column above)"
        )
    print(
        "note: the direct side replays every recorded request per model in one chat() call;\n"
        "      the pipeline runs its stages in sequence (evolution needs the completions,\n"
        "      judging needs both), so the direct figure is an idealized lower bound.\n"
        "      Module imports are excluded on both sides. cpu s well below seconds means\n"
        "      other load on the machine slowed that run."
    )


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from prefgen_dagster.bundled import TINY_CONFIG

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="instructions (JSONL)")
    parser.add_argument("--limit", type=int, default=None, help="use the first L instructions")
    parser.add_argument(
        "--count", type=int, default=None, help="N instructions: the L over and over (variants)"
    )
    parser.add_argument(
        "--grow", type=float, default=1.0, help="then add this %% more and run again (0: skip)"
    )
    parser.add_argument(
        "--grow-runs", type=int, default=3, help="grow this many times (the median is reported)"
    )
    parser.add_argument("--no-direct", action="store_true", help="skip the direct replay")
    parser.add_argument("--config", type=Path, default=TINY_CONFIG, help="pipeline config")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    parser.add_argument("--replay-db", type=Path, help=argparse.SUPPRESS)  # child process mode
    parser.add_argument("--replay-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if (args.count is not None and args.count < 1) or (args.limit is not None and args.limit < 1):
        parser.error("--limit and --count must be at least 1")
    return args


def run_benchmark(args: argparse.Namespace, workdir: Path) -> int:
    count = args.count or args.limit or len(args.data.read_text().splitlines())
    records = load_instructions(args.data, args.limit, count)
    config_path, batch = prepare_workdir(workdir, args.config, records)
    db_path = duckdb_file(config_path)
    warm_imports()

    cold = time_pipeline(batch, config_path)
    rss = peak_rss_mb()
    log = read_call_log(db_path)
    # The direct side replays the cold run's requests, before any other run adds its own.
    direct = None
    if not args.no_direct:
        direct = replay_in_child(db_path, config_path, workdir / "direct.json")
    warm = time_pipeline(batch, config_path)
    warm_calls = read_call_log(db_path).calls - log.calls  # each engine call adds a row
    grown = []  # each run adds args.grow % to the batch as the run before left it
    for _ in range(args.grow_runs if args.grow > 0 else 0):
        added = grow_batch(batch, args.data, args.limit, args.grow)
        calls = read_call_log(db_path).calls
        run = time_pipeline(batch, config_path)
        grown.append(Growth(added, run, read_call_log(db_path).calls - calls))

    print_report(len(records), log, cold, warm, warm_calls, grown, direct, rss)
    runs = [cold, warm] + [growth.run for growth in grown]
    if not all(run.ok for run in runs):
        print("warning: a pipeline run did not succeed (see its summary above)")
    return 0 if all(run.ok for run in runs) else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replay_db is not None:
        from vllm import LLM  # noqa: F401  (imported before the clock starts, as in the parent)

        result = replay(args.replay_db, args.config)
        args.replay_out.write_text(json.dumps(asdict(result)))
        return 0
    if args.workdir is not None:
        return run_benchmark(args, args.workdir)
    with tempfile.TemporaryDirectory(prefix="prefgen-bench-") as tmp:
        return run_benchmark(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
