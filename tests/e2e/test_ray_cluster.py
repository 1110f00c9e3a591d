"""The LLM stages on a real local Ray cluster (head + worker node on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from prefgen_dagster.config import load_config
from prefgen_dagster.config.base import SamplingParams
from prefgen_dagster.defs.pipeline_run import materialize_batch
from prefgen_dagster.llm.pool import EnginePool
from prefgen_dagster.llm.runner import run_requests
from prefgen_dagster.llm.shards import PARTIAL, ShardFiles, model_prefix, record
from prefgen_dagster.llm.types import LLMRequest, LLMResult
from prefgen_dagster.local_models.reward import make_tiny_reward_model
from prefgen_dagster.storage.store import Storage

from .conftest import drop_batch, with_reward_model, write_config
from .ray_cluster import ray_cluster
from .test_pipeline_vllm import LLM_ASSETS, engine_calls, mt_bench_lines
from .test_resume_and_concurrency import batch_tables

BATCH = "on-ray.jsonl"
KILL_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    with ray_cluster() as address:
        yield address


def llm_calls(db: Path) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(
            "SELECT call_id, model, request, response, finish_reason, prompt_tokens,"
            " completion_tokens FROM llm_calls ORDER BY call_id"
        ).fetchall()


@pytest.mark.slow
def test_llm_stages_on_ray_match_the_in_process_run(
    tmp_path: Path, tiny_models: Path, cluster: str
) -> None:
    runs = {"in_process": None, "ray": {"address": cluster, "shard_size": 8}}
    databases = {}
    for name, ray in runs.items():
        workdir = tmp_path / name
        workdir.mkdir()
        config_path = write_config(workdir, tiny_models, **({"ray": ray} if ray else {}))
        drop_batch(workdir, BATCH, mt_bench_lines(3))
        with dg.instance_for_test() as instance:
            batch, export = materialize_batch(config_path, BATCH, instance)
            assert batch.success and export is not None and export.success
            assert all(engine_calls(batch, asset) > 0 for asset in LLM_ASSETS)
            if ray:
                # The engines started once per model, on the cluster's workers.
                starts = sum(engine_calls(batch, a, "engine_starts") for a in LLM_ASSETS)
                assert starts == 2
                again, _ = materialize_batch(config_path, BATCH, instance)
                assert again.success
                assert [engine_calls(again, asset) for asset in LLM_ASSETS] == [0, 0, 0]
        databases[name] = workdir / "data" / "prefgen.duckdb"
        if ray:  # every shard file was moved into the cache
            assert list((workdir / "data" / "shards").iterdir()) == []

    local, on_ray = databases["in_process"], databases["ray"]
    assert batch_tables(on_ray, BATCH) == batch_tables(local, BATCH)
    assert llm_calls(on_ray) == llm_calls(local)
    assert len(llm_calls(local)) > 20


def numbered_requests(identity: str, count: int) -> list[LLMRequest]:
    """Requests whose answers have many lengths, so that a shard's answers arrive one
    after another."""
    return [
        LLMRequest(
            identity,
            [{"role": "user", "content": f"Write about the number {i}."}],
            SamplingParams(temperature=1.0, max_tokens=32 + (i * 37) % 480),
            seed=i,
        )
        for i in range(count)
    ]


def kill_after_journaled(shard_dir: Path, pid: int, lines: int, killed: list[int]) -> None:
    """SIGKILL the worker `pid` once a shard of it has journaled `lines` answers."""
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while time.monotonic() < deadline:
        for journal in shard_dir.glob(f"*{PARTIAL}"):
            if journal.read_text().count("\n") >= lines:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.01)


@pytest.mark.slow
def test_a_worker_killed_mid_stage_loses_only_what_was_in_flight(
    tmp_path: Path, tiny_models: Path, cluster: str
) -> None:
    ray = {"address": cluster, "shard_size": 40, "max_restarts": 2}
    config = load_config(write_config(tmp_path, tiny_models, ray=ray))
    storage = Storage(config.resolve(config.paths.duckdb_path))
    model = "tiny-qwen2"
    requests = numbered_requests(config.models[model].path, 120)
    killed: list[int] = []
    with EnginePool() as pool:
        engine = pool.get(config, model)
        [pid] = engine.worker_pids
        shard_dir = config.resolve(config.ray.shard_dir)
        killer = threading.Thread(target=kill_after_journaled, args=(shard_dir, pid, 5, killed))
        killer.start()
        answers, stats = run_requests([(model, r) for r in requests], storage, config, pool)
        killer.join()

    assert killed == [pid]
    # The stage finished: every request answered, none failed.
    assert stats.failed == 0 and len(answers) == len(requests)
    cached = storage.query("SELECT count(*) AS n, count(DISTINCT call_id) AS d FROM llm_calls")
    assert cached.row(0) == (len(requests), len(requests))
    # No finished request was paid twice: what the lost worker journaled was taken from
    # its journal, and the restarted worker sent only the rest.
    assert engine.reused >= 5
    assert engine.sent + engine.reused == len(requests)


@pytest.mark.slow
def test_answers_a_killed_run_left_in_shard_files_are_not_asked_again(
    tmp_path: Path, tiny_models: Path, cluster: str
) -> None:
    config = load_config(write_config(tmp_path, tiny_models, ray={"address": cluster}))
    storage = Storage(config.resolve(config.paths.duckdb_path))
    model = "tiny-qwen2"
    identity = config.models[model].path
    requests = numbered_requests(identity, 30)
    # A run killed with its driver left a finished shard and a worker's partial journal.
    files = ShardFiles(str(config.resolve(config.ray.shard_dir)))
    left = LLMResult("left by a killed run", "stop", 5, 4)
    files.finish(f"{model_prefix(identity)}done", [record(r.call_id, left) for r in requests[:5]])
    with files.journal(f"{model_prefix(identity)}lost") as journal:
        for request in requests[5:8]:
            journal.write(json.dumps(record(request.call_id, left)) + "\n")

    with EnginePool() as pool:
        engine = pool.get(config, model)
        answers, stats = run_requests([(model, r) for r in requests], storage, config, pool)

    assert stats.failed == 0 and len(answers) == 30
    assert engine.sent == 22  # only what no shard file held
    assert [answers[r.call_id]["response"] for r in requests[:8]] == [left.text] * 8
    assert storage.query("SELECT count(*) AS n FROM llm_calls").item() == 30


@pytest.mark.slow
def test_a_reward_model_scores_on_ray_as_in_process(
    tmp_path: Path, tiny_models: Path, cluster: str
) -> None:
    reward = make_tiny_reward_model(tmp_path / "tiny-reward", seed=4)
    models = with_reward_model(tiny_models, reward)
    judge = {"models": ["tiny-reward"], "mode": "reward"}
    scores = {}
    for name, ray in {"in_process": {}, "ray": {"address": cluster, "shard_size": 4}}.items():
        workdir = tmp_path / name
        workdir.mkdir()
        config = load_config(
            write_config(workdir, tiny_models, models=models, judge=judge, ray=ray)
        )
        requests = [
            LLMRequest(
                str(reward),
                [
                    {"role": "user", "content": "Why is the sky blue?"},
                    {"role": "assistant", "content": f"Answer number {i}: light scatters."},
                ],
                SamplingParams(max_tokens=1),
                seed=i,
            )
            for i in range(10)
        ]
        storage = Storage(config.resolve(config.paths.duckdb_path))
        with EnginePool() as pool:
            answers, stats = run_requests(
                [("tiny-reward", r) for r in requests], storage, config, pool
            )
        assert stats.failed == 0
        scores[name] = [float(answers[r.call_id]["response"]) for r in requests]
    # The pooling runner on the cluster's workers gives the in-process scores.
    assert scores["ray"] == pytest.approx(scores["in_process"], rel=1e-5)
    assert len(set(scores["ray"])) > 1
