"""vLLM on a Ray cluster: a stage's requests cut into shards (`llm/shards.py`), answered by
Ray actors that each hold one engine for their model.

`RayShardedEngine` is what the run's `EnginePool` holds for a `vllm` model when
`ray.address` is set: it starts `ray.workers_per_model` actors (`EngineWorker`) when the
model is first needed and keeps them for every later stage of the run, like an in-process
engine. `generate` hands shards to whichever worker is free and, as each finishes, reads
its Parquet file and passes every answer on (the runner journals it and writes it to
`llm_calls`: DuckDB keeps its one writer, this process). Ray restarts a lost worker (up to
`ray.max_restarts`) and asks its shard again; the restarted worker skips what the lost one
had journaled, so no finished request is paid for twice.

Why actors around prefgen's own engine rather than `ray.data.llm` (see docs/scaling.md):
the same engine code as in-process (same prompts, token ids and answers), and each answer
journaled as it arrives, so a lost worker costs only what it had in flight.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from prefgen_dagster.config.base import ModelSpec
from prefgen_dagster.llm.shards import ShardFiles, model_prefix, plan_shards, record, result_of
from prefgen_dagster.llm.shards import shard_name as name_of
from prefgen_dagster.llm.types import LLMRequest, LLMResult, OnResult

if TYPE_CHECKING:
    from prefgen_dagster.config import PipelineConfig
    from prefgen_dagster.config.scaling import RayConfig


class EngineWorker:
    """One engine for one model, on a Ray worker (a Ray actor; see `RayShardedEngine`)."""

    def __init__(self, location: str, spec: ModelSpec, shard_dir: str):
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine core in this actor
        from prefgen_dagster.llm.engines.vllm_offline import vllm_engine

        self._engine = vllm_engine(location, spec)
        self._files = ShardFiles(shard_dir)

    def ready(self) -> int:
        """The worker's process id, once its engine has started."""
        return os.getpid()

    def run_shard(self, name: str, requests: Sequence[LLMRequest]) -> dict[str, Any]:
        """Answer one shard (what an earlier, lost worker journaled for it is not asked
        again), write it as Parquet; returns its name and how many requests this worker
        sent to its engine and took from the journal."""
        if self._files.finished(name):  # a lost worker wrote it, then died before returning
            return {"name": name, "sent": 0, "reused": len(requests)}
        rows = self._files.journaled(name)
        todo = [request for request in requests if request.call_id not in rows]
        with self._files.journal(name) as journal:

            def keep(index: int, result: LLMResult) -> None:
                row = record(todo[index].call_id, result)
                rows[row["call_id"]] = row
                if journal is not None:
                    journal.write(json.dumps(row, ensure_ascii=False) + "\n")
                    journal.flush()

            self._engine.generate(todo, keep)
        self._files.finish(name, rows.values())
        return {"name": name, "sent": len(todo), "reused": len(requests) - len(todo)}


class RayShardedEngine:
    """The `Engine` of one vLLM model on a Ray cluster; `close` stops its workers."""

    def __init__(self, config: PipelineConfig, model_name: str):
        import ray

        settings = config.ray
        connect(settings)
        self._shard_size = settings.shard_size
        shard_dir = _shard_location(config, settings)
        self._files = ShardFiles(shard_dir)
        actor = ray.remote(EngineWorker).options(
            num_cpus=settings.cpus_per_worker,
            num_gpus=settings.gpus_per_worker,
            max_restarts=settings.max_restarts,
            max_task_retries=settings.max_restarts,
        )
        location, spec = config.model_location(model_name), config.models[model_name]
        self._workers = [
            actor.remote(location, spec, shard_dir) for _ in range(settings.workers_per_model)
        ]
        # The start-up the pool times: every worker's engine is up when this returns.
        self.worker_pids = ray.get([worker.ready.remote() for worker in self._workers])
        # Requests this engine's workers sent to vLLM, and answers they took from the
        # journal of a lost worker instead (counted for the fault test and the bench).
        self.sent = self.reused = 0

    def generate(
        self, requests: Sequence[LLMRequest], on_result: OnResult | None = None
    ) -> list[LLMResult]:
        from ray.util import ActorPool

        results: list[LLMResult | None] = [None] * len(requests)
        waiting = {request.call_id: index for index, request in enumerate(requests)}

        def settle(row: dict[str, Any]) -> None:
            index = waiting.pop(row["call_id"], None)
            if index is not None:
                results[index] = result = result_of(row)
                if on_result is not None:
                    on_result(index, result)

        if requests:  # answers that a killed run's workers left behind
            for row in self._files.leftovers(model_prefix(requests[0].model)):
                settle(row)
        pending = [requests[index] for index in sorted(waiting.values())]
        shards = plan_shards(pending, self._shard_size) if pending else []
        work = ActorPool(list(self._workers)).map_unordered(
            lambda worker, shard: worker.run_shard.remote(name_of(shard), shard), shards
        )
        for outcome in work:
            for row in self._files.read(outcome["name"]):
                settle(row)
            self._files.remove(outcome["name"])  # its answers are in the runner's journal
            self.sent += outcome["sent"]
            self.reused += outcome["reused"]
        return [result for result in results if result is not None]

    def close(self) -> None:
        import ray

        for worker in self._workers:
            ray.kill(worker, no_restart=True)
        self._workers = []


def connect(settings: RayConfig) -> None:
    """Join the configured cluster once per process. `ray.init` takes over SIGTERM, which
    prefgen's own handler turns into a clean stop (every answer written): it is put back."""
    import ray

    if ray.is_initialized():
        return
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGTERM) if main else None
    address = None if settings.address == "local" else settings.address
    ray.init(address=address, log_to_driver=False, configure_logging=False)
    if handler is not None:
        signal.signal(signal.SIGTERM, handler)


def _shard_location(config: PipelineConfig, settings: RayConfig) -> str:
    if "://" in settings.shard_dir:
        return settings.shard_dir
    return str(config.resolve(settings.shard_dir).resolve())
