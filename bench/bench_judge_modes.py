"""Judge modes on a real model: canary accuracy, position effect, calls, tokens and time.

One batch of MT-Bench instructions goes through generation and EvolQuality once (the demo
config: SmolLM2-135M-Instruct and a tiny random model); then the judging stage runs once per
mode (listwise, pointwise, pairwise) on the same candidates and canaries, each on a fresh
engine, and the table compares what each mode's labels are worth and what they cost.

    .venv/bin/python bench/bench_judge_modes.py --limit 24
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import dagster as dg
import polars as pl
import yaml

from prefgen_dagster.bundled import DEMO_CONFIG, SMOLLM2_FOLDER
from prefgen_dagster.config import load_config
from prefgen_dagster.defs.graph import build_graph
from prefgen_dagster.defs.partitions import batches
from prefgen_dagster.defs.resources import run_resources
from prefgen_dagster.judge import stage as judge
from prefgen_dagster.judge.calibration import accuracy_by_kind
from prefgen_dagster.llm.driver import StageRun, run_stage
from prefgen_dagster.llm.pool import EnginePool
from prefgen_dagster.local_models.packaged import make_smollm2
from prefgen_dagster.local_models.tiny import TINY_MODELS, make_tiny_model
from prefgen_dagster.storage.store import Storage

MT_BENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "mt-bench-80.jsonl"
BATCH = "mt-bench.jsonl"
UP_TO_JUDGING = ("instructions", "completions", "evolved_completions", "candidates")


def spread(limit: int) -> list[str]:
    """`limit` MT-Bench questions, taken evenly across its eight categories."""
    rows = [json.loads(line) for line in MT_BENCH.read_text().splitlines()]
    by_category: dict[str, list[dict]] = {}
    for row in rows:
        by_category.setdefault(row["category"], []).append(row)
    picked = []
    while len(picked) < limit and any(by_category.values()):
        for group in by_category.values():
            if group and len(picked) < limit:
                picked.append(group.pop(0))
    return [json.dumps({"instruction": row["instruction"]}) for row in picked]


def prepare(workdir: Path, limit: int) -> Path:
    """Models, config (canaries for every instruction) and the batch file; runs the stages
    before judging."""
    folder, arch, seed = TINY_MODELS[0]
    make_tiny_model(workdir / folder, arch=arch, seed=seed)
    make_smollm2(workdir / SMOLLM2_FOLDER)
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["judge"]["canaries"]["fraction"] = 1.0
    config_path = workdir / "prefgen.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    inbox = workdir / "data" / "inbox"
    inbox.mkdir(parents=True)
    (inbox / BATCH).write_text("\n".join(spread(limit)) + "\n")
    up_to_judging(config_path)
    return config_path


def up_to_judging(config_path: Path) -> None:
    """The stages before judging, materialized for the batch `BATCH` in the config's inbox."""
    graph = build_graph(load_config(config_path))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(batches.name, [BATCH])
        result = dg.materialize(
            graph.definitions,
            selection=dg.AssetSelection.assets(*UP_TO_JUDGING),
            partition_key=BATCH,
            instance=instance,
            resources=run_resources(str(config_path)),
            raise_on_error=True,
        )
    assert result.success


def run_judging(config_path: Path, judge_settings: dict, name: str) -> tuple[StageRun, float]:
    """The judging stage alone, with the config's `judge` section updated by
    `judge_settings` (written beside it as `prefgen-<name>.yaml`), on a fresh engine: what
    it made and its wall time."""
    raw = yaml.safe_load(config_path.read_text())
    raw["judge"] = {**raw["judge"], **judge_settings}
    path = config_path.with_name(f"prefgen-{name}.yaml")
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    config = load_config(path)
    storage = Storage(config.resolve(config.paths.duckdb_path))
    started = time.perf_counter()
    with EnginePool() as engines:
        made = run_stage(judge.STAGE, config, storage, BATCH, engines)
    return made, time.perf_counter() - started


def judge_with(config_path: Path, mode: str) -> dict:
    """Run the judging stage in one mode; its calibration, cost and time."""
    made, wall = run_judging(config_path, {"mode": mode}, mode)
    ratings, canaries = made.outputs["ratings"], made.outputs["canaries"]
    calibration, stats = made.outputs["judge_calibration"], made.stats
    [row] = calibration.filter(pl.col("sets_labels")).to_dicts()
    parse_ok = ratings.filter(pl.col("parse_status") == "ok").height
    return {
        "mode": mode,
        **row,
        "by_kind": accuracy_by_kind(ratings, canaries, row["judge"]),
        "requests": stats.engine_calls,
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "parse_ok": parse_ok / max(ratings.height, 1),
        "wall_s": wall,
        "engine_s": stats.engine_seconds,
    }


def report(results: list[dict], limit: int, candidates: int) -> str:
    lines = [
        f"{limit} MT-Bench instructions, {candidates} candidates each; judge SmolLM2-135M-"
        "Instruct (float32, vLLM CPU, 2 cores)",
        "",
        "| mode | canaries | accuracy [95% CI] | position effect | requests | prompt tok "
        "| completion tok | parsed | wall s |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        effect = "n/a" if r["position_effect"] is None else f"{r['position_effect']:+.2f}"
        accuracy = (
            "n/a (no canary scored)"
            if r["canary_accuracy"] is None
            else f"{r['canary_accuracy']:.2f} [{r['canary_ci_low']:.2f}, {r['canary_ci_high']:.2f}]"
        )
        lines.append(
            f"| {r['mode']} | {r['canaries']} | {accuracy} | {effect} | "
            f"{r['requests']} | {r['prompt_tokens']} | {r['completion_tokens']} | "
            f"{r['parse_ok']:.0%} | {r['wall_s']:.0f} |"
        )
    lines += ["", "accuracy by canary kind (canaries):"]
    for r in results:
        kinds = ", ".join(
            f"{kind} {_share(v['accuracy'])} ({v['canaries']})" for kind, v in r["by_kind"].items()
        )
        lines.append(f"  {r['mode']}: {kinds}")
    return "\n".join(lines)


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=24, help="MT-Bench instructions")
    parser.add_argument("--modes", nargs="+", default=["listwise", "pointwise", "pairwise"])
    parser.add_argument("--workdir", type=Path, help="kept afterwards (default: a temp dir)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="prefgen-judge-bench-"))
    try:
        started = time.perf_counter()
        config_path = prepare(workdir, args.limit)
        print(f"generation and rewrites: {time.perf_counter() - started:.0f} s", flush=True)
        results = []
        for mode in args.modes:
            results.append(judge_with(config_path, mode))
            print(f"{mode}: {results[-1]['wall_s']:.0f} s", flush=True)
        storage = Storage(workdir / "data" / "prefgen.duckdb")
        counts = storage.query(
            "SELECT count(*) AS n FROM (SELECT completion_id FROM completions UNION ALL "
            "SELECT completion_id FROM evolved_completions)"
        )["n"][0]
        print()
        print(report(results, args.limit, counts // args.limit))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
