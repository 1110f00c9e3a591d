"""A reward model against a listwise LLM judge, on the same engine (vLLM in-process, CPU):
wall time, requests and tokens to judge N instructions x 4 candidates.

The pool (tiny.yaml's two tiny models, two answers each, no rewrites) writes the candidates
once; then the judging stage runs twice on them, each on a fresh engine: the tiny Qwen2 chat
model as a listwise judge, and the tiny reward model (the same Qwen2 body with a score head,
`local_models/reward.py`). Both models are random: this measures cost, not judgement.

    .venv/bin/python bench/bench_reward_judge.py --count 1000
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

from prefgen_dagster.bundled import TINY_CONFIG
from prefgen_dagster.local_models.reward import make_tiny_reward_model
from prefgen_dagster.local_models.tiny import make_tiny_models

# The judge bench's helpers, imported as `bench.` (a first-party name) from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_judge_modes import BATCH, MT_BENCH, run_judging, up_to_judging  # noqa: E402

JUDGES = {
    "listwise LLM judge (tiny-qwen2)": {"models": ["tiny-qwen2"], "mode": "listwise"},
    "reward model (tiny-reward)": {"models": ["tiny-reward"], "mode": "reward"},
}


def prepare(workdir: Path, count: int) -> Path:
    """Models, config and `count` instructions (MT-Bench's, numbered); the candidates made."""
    make_tiny_models(workdir)
    reward = make_tiny_reward_model(workdir / "models" / "tiny-reward", seed=4)
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["models"]["tiny-reward"] = {
        **config["models"]["tiny-qwen2"],
        "path": str(reward),
        "kind": "reward",
        "engine_kwargs": {"enforce_eager": True, "kv_cache_memory_bytes": 67108864},
    }
    config["evol_quality"]["num_evolutions"] = 0
    for member in config["generation"]["pool"]:
        member["sampling"]["max_tokens"] = 32
    config_path = workdir / "prefgen.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    questions = [json.loads(line)["instruction"] for line in MT_BENCH.read_text().splitlines()]
    rows = [
        json.dumps({"instruction": f"{questions[i % len(questions)]} (variant {i})"})
        for i in range(count)
    ]
    inbox = workdir / "data" / "inbox"
    inbox.mkdir(parents=True)
    (inbox / BATCH).write_text("\n".join(rows) + "\n")
    up_to_judging(config_path)
    return config_path


def judge_with(config_path: Path, name: str, settings: dict) -> dict:
    made, wall = run_judging(config_path, settings, settings["mode"])
    stats, ratings = made.stats, made.outputs["ratings"]
    return {
        "judge": name,
        "requests": stats.engine_calls,
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "rated": ratings.filter(ratings["rating"].is_not_null()).height,
        "ratings": ratings.height,
        "engine_s": stats.engine_seconds,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="instructions")
    parser.add_argument("--workdir", type=Path, help="kept afterwards (default: a temp dir)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="prefgen-reward-bench-"))
    try:
        started = time.perf_counter()
        config_path = prepare(workdir, args.count)
        print(f"candidates: {time.perf_counter() - started:.0f} s", flush=True)
        results = [judge_with(config_path, name, s) for name, s in JUDGES.items()]
        print(f"\n{args.count} instructions x 4 candidates, vLLM CPU in-process, 2 cores\n")
        print("| judge | requests | prompt tok | completion tok | rated | engine s | wall s |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in results:
            print(
                f"| {r['judge']} | {r['requests']} | {r['prompt_tokens']} | "
                f"{r['completion_tokens']} | {r['rated']}/{r['ratings']} | "
                f"{r['engine_s']:.1f} | {r['wall_s']:.1f} |"
            )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
