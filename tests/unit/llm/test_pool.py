"""The run's engine pool: one start per model, released when no later stage needs it."""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.config.base import SamplingParams
from prefgen_dagster.llm.pool import EnginePool
from prefgen_dagster.llm.runner import prefix_order, run_requests
from prefgen_dagster.llm.types import LLMRequest, LLMResult, OnResult
from prefgen_dagster.stages import models_after
from prefgen_dagster.storage.store import Storage
from tests.unit.conftest import config_dict

MakeConfig = Callable[..., PipelineConfig]


@dataclass
class CountingOpener:
    """Opens engines that answer "ok", and logs every open, close and request."""

    log: list[str] = field(default_factory=list)
    asked: list[LLMRequest] = field(default_factory=list)
    # Engines that share process-wide state, as in-process vLLM engines do.
    shared: bool = False

    def __call__(self, config: PipelineConfig, model_name: str) -> CountedEngine:
        self.log.append(f"open {model_name}")
        return CountedEngine(self, model_name, self.shared)


@dataclass
class CountedEngine:
    opener: CountingOpener
    model_name: str
    shares_process_state: bool

    def generate(
        self, requests: Sequence[LLMRequest], on_result: OnResult | None = None
    ) -> list[LLMResult]:
        self.opener.asked.extend(requests)
        return [LLMResult("ok", "stop", 3, 1) for _ in requests]

    def close(self) -> None:
        self.opener.log.append(f"close {self.model_name}")
        gc.collect()  # as vLLM's shutdown does, twice per engine
        gc.collect()


def request(prompt: str, model: str = "models/gen-a", system: str | None = None) -> LLMRequest:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    return LLMRequest(model, messages, SamplingParams(), seed=1)


def test_a_model_used_by_several_stages_starts_once(
    storage: Storage, config: PipelineConfig
) -> None:
    opener = CountingOpener()
    with EnginePool(opener) as pool:
        # generation asks gen-a and gen-b, EvolQuality gen-a again, the judge judge-m
        for stage, models in [("g", ["gen-a", "gen-b"]), ("e", ["gen-a"]), ("j", ["judge-m"])]:
            requests = [(name, request(f"{stage} {name}", f"models/{name}")) for name in models]
            _, stats = run_requests(requests, storage, config, pool)
            assert stats.engine_starts == (0 if stage == "e" else len(models))
        assert pool.starts == ["gen-a", "gen-b", "judge-m"]
    assert opener.log[:3] == ["open gen-a", "open gen-b", "open judge-m"]
    assert sorted(opener.log[3:]) == ["close gen-a", "close gen-b", "close judge-m"]


def test_engines_no_later_stage_calls_are_closed_after_each_stage(
    config: PipelineConfig,
) -> None:
    # The base config: pool gen-a and gen-b, EvolQuality gen-a, judge judge-m.
    assert models_after(config, "generation") == {"gen-a", "judge-m"}
    assert models_after(config, "evol_quality") == {"judge-m"}
    assert models_after(config, "judge") == set()
    opener = CountingOpener()
    pool = EnginePool(opener)
    pool.get(config, "gen-a")
    pool.get(config, "gen-b")
    pool.keep_only(models_after(config, "generation"))
    assert pool.loaded == ["gen-a"] and opener.log[-1] == "close gen-b"
    pool.keep_only(models_after(config, "evol_quality"))
    assert pool.loaded == []


def test_max_loaded_models_closes_the_least_recently_used_first(make_config: MakeConfig) -> None:
    config = make_config(engine={"max_loaded_models": 2})
    opener = CountingOpener()
    pool = EnginePool(opener)
    for name in ["gen-a", "gen-b", "gen-a", "judge-m"]:
        pool.get(config, name)
    assert opener.log == ["open gen-a", "open gen-b", "close gen-b", "open judge-m"]
    assert pool.loaded == ["gen-a", "judge-m"]
    pool.close()


def test_engines_sharing_process_state_are_closed_only_together(
    make_config: MakeConfig,
) -> None:
    """Closing one in-process vLLM engine would break the others: they stay until none is
    needed, and making room closes them all."""
    config = make_config()
    opener = CountingOpener(shared=True)
    pool = EnginePool(opener)
    pool.get(config, "gen-a")
    pool.get(config, "gen-b")
    pool.keep_only({"gen-b"})
    assert pool.loaded == ["gen-a", "gen-b"]
    pool.keep_only(set())
    assert pool.loaded == [] and opener.log[-2:] == ["close gen-a", "close gen-b"]
    limited = make_config(engine={"max_loaded_models": 2})
    for name in ["gen-a", "gen-b", "judge-m"]:
        pool.get(limited, name)
    assert pool.loaded == ["judge-m"]
    assert opener.log[-3:] == ["close gen-a", "close gen-b", "open judge-m"]
    # A model whose settings changed restarts, and takes the others down with it.
    pool.get(config, "gen-a")
    models = config_dict()["models"]
    models["judge-m"]["max_model_len"] = 1024
    pool.get(make_config(models=models), "judge-m")
    assert opener.log[-4:] == ["open gen-a", "close gen-a", "close judge-m", "open judge-m"]
    pool.close()


def test_closing_engines_runs_one_full_collection_after_the_last(
    make_config: MakeConfig,
) -> None:
    full_passes: list[int] = []

    def count(phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2:
            full_passes.append(info["collected"])

    config = make_config()
    opener = CountingOpener(shared=True)
    pool = EnginePool(opener)
    pool.get(config, "gen-a")
    pool.get(config, "gen-b")
    gc.callbacks.append(count)
    try:
        pool.close()
    finally:
        gc.callbacks.remove(count)
    assert opener.log[-2:] == ["close gen-a", "close gen-b"]
    assert len(full_passes) == 1  # the engines' four became one
    assert gc.collect() >= 0 and gc.collect.__module__ == "gc"  # restored


def test_a_model_whose_settings_changed_between_stages_starts_again(
    make_config: MakeConfig,
) -> None:
    opener = CountingOpener()
    pool = EnginePool(opener)
    first = pool.get(make_config(), "gen-a")
    models = config_dict()["models"]
    models["gen-a"]["max_model_len"] = 1024
    second = pool.get(make_config(models=models), "gen-a")
    assert second is not first
    assert opener.log == ["open gen-a", "close gen-a", "open gen-a"]
    pool.close()


def test_requests_sharing_a_prefix_go_to_the_engine_together() -> None:
    rubric = "Rate each text."
    mixed = [
        request("instruction B, text 1", system=rubric),
        request("instruction A"),
        request("instruction B, text 2", system=rubric),
        request("instruction A", system=rubric),
        request("instruction B, text 1"),
    ]
    ordered = prefix_order(mixed)
    # The judge's rubric first (its requests share it), then each instruction's together.
    assert [r.messages[-1]["content"] for r in ordered] == [
        "instruction A",
        "instruction B, text 1",
        "instruction B, text 2",
        "instruction A",
        "instruction B, text 1",
    ]
    assert [r.messages[0]["role"] for r in ordered] == ["system"] * 3 + ["user"] * 2
