"""The engines of one run: one per model, started when a stage first needs it and kept while
a later stage of the run may need it.

A model used by several stages (a pool member that also rewrites or judges, the judge across
its re-asks and canaries, the pool across diversity-guard rounds) starts once per run. All
stages of a run execute in one process (`dg.materialize`, and `in_process_executor` for runs
launched by Dagster), so the pool lives as long as the run: `defs/resources.py` holds it.

An engine start is the largest fixed cost of a batch (seconds on CPU, 20-60 s for a real
model on a GPU); memory is what it costs to keep one. After each stage the engines that no
later stage calls are closed (`keep_only`), and `engine.max_loaded_models` bounds how many
are held at once: on one GPU whose memory fits a single model, set it to 1.

In-process vLLM engines share the process's distributed state, and closing one tears it
down under the others ("pipeline model parallel group is not initialized"). So such engines
(`shares_process_state`) are closed only all together: kept while any of them is still
needed, all closed when one must make room.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from prefgen_dagster.ids import stable_hash
from prefgen_dagster.llm.heap import one_full_collection
from prefgen_dagster.llm.types import Engine

if TYPE_CHECKING:
    from prefgen_dagster.config import PipelineConfig

# Opens a real engine for one model of the config.
EngineOpener = Callable[["PipelineConfig", str], Engine]


def open_engine(config: PipelineConfig, model_name: str) -> Engine:
    """A real engine for one model of the config (imports the backend lazily)."""
    spec = config.models[model_name]
    if spec.backend == "vllm" and config.ray.address is not None:
        from prefgen_dagster.llm.engines.ray_shards import RayShardedEngine

        return RayShardedEngine(config, model_name)
    if spec.backend == "vllm":
        from prefgen_dagster.llm.engines.vllm_offline import vllm_engine

        return vllm_engine(config.model_location(model_name), spec)
    from prefgen_dagster.llm.engines.openai_http import OpenAIHTTPEngine

    return OpenAIHTTPEngine(spec)


class EnginePool:
    """Engines by model name, most recently used last; use it as a context (closes all)."""

    def __init__(self, opener: EngineOpener = open_engine):
        self._opener = opener
        self._engines: dict[str, tuple[str, Engine]] = {}  # name -> (settings hash, engine)
        # Every start, in order (a model started again after a release appears twice), and
        # the seconds they took.
        self.starts: list[str] = []
        self.start_seconds = 0.0

    def __enter__(self) -> EnginePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, config: PipelineConfig, model_name: str) -> Engine:
        """The model's engine, started now if the pool does not hold one with these settings
        (making room first when `engine.max_loaded_models` is reached)."""
        settings = stable_hash(
            [config.model_location(model_name), config.models[model_name].model_dump(mode="json")]
        )
        held = self._engines.pop(model_name, None)
        if held is not None and held[0] == settings:
            self._engines[model_name] = held  # now the most recently used
            return held[1]
        if held is not None:  # the config changed between stages: its settings are stale
            self._engines[model_name] = held
            self._close_with_shared(model_name)
        limit = config.engine.max_loaded_models
        while limit is not None and len(self._engines) >= limit:
            self._close_with_shared(next(iter(self._engines)))  # the least recently used
        began = time.perf_counter()
        engine = self._opener(config, model_name)
        self.start_seconds += time.perf_counter() - began
        self.starts.append(model_name)
        self._engines[model_name] = (settings, engine)
        return engine

    @property
    def loaded(self) -> list[str]:
        return list(self._engines)

    def keep_only(self, model_names: Collection[str]) -> None:
        """Close every engine whose model is not listed (no later stage needs it), but no
        process-sharing engine while another one stays."""
        closing = [name for name in self._engines if name not in model_names]
        if set(self._shared()) - set(closing):
            closing = [name for name in closing if name not in self._shared()]
        self._close_all(closing)

    def close(self) -> None:
        self.keep_only(())

    def _close_with_shared(self, model_name: str) -> None:
        """Close one engine; if it shares process state, close every engine that does."""
        shared = _shares(self._engines[model_name][1])
        self._close_all(self._shared() if shared else [model_name])

    def _shared(self) -> list[str]:
        return [name for name, (_, engine) in self._engines.items() if _shares(engine)]

    def _close_all(self, model_names: Collection[str]) -> None:
        if not model_names:
            return
        with one_full_collection():  # not two per vLLM engine (llm/heap.py)
            for name in model_names:
                _, engine = self._engines.pop(name)
                engine.close()


def _shares(engine: Engine) -> bool:
    return getattr(engine, "shares_process_state", False)
