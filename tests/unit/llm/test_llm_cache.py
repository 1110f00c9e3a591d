"""`run_requests` through the real `llm_calls` cache (a tmp DuckDB file) and a scripted engine."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.config.base import SamplingParams
from prefgen_dagster.llm.pool import EngineOpener, EnginePool
from prefgen_dagster.llm.runner import (
    EngineFailed,
    RunStats,
    TokenBudgetReached,
    run_requests,
)
from prefgen_dagster.llm.saver import AnswerSaver, journal_dir
from prefgen_dagster.llm.types import LLMRequest, LLMResult, OnResult
from prefgen_dagster.storage.store import Storage


@dataclass
class ScriptedEngines:
    """An engine opener whose engines answer `echo: <prompt>` and record every call.

    Prompts listed in `failing` come back with an error result; once `crash_after_chunks`
    chunks have been answered, the next `generate` raises instead; `interrupt_after` answers
    in, a Ctrl-C (KeyboardInterrupt) comes.
    """

    failing: set[str] = field(default_factory=set)
    crash_after_chunks: int | None = None
    interrupt_after: int | None = None
    chunks: list[tuple[str, list[str]]] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)

    def __call__(self, config: PipelineConfig, model_name: str) -> ScriptedEngine:
        self.opened.append(model_name)
        return ScriptedEngine(self, model_name)

    @property
    def asked(self) -> list[str]:
        return [prompt for _, chunk in self.chunks for prompt in chunk]


@dataclass
class ScriptedEngine:
    script: ScriptedEngines
    model_name: str

    def generate(
        self, requests: Sequence[LLMRequest], on_result: OnResult | None = None
    ) -> list[LLMResult]:
        crash_at = self.script.crash_after_chunks
        if crash_at is not None and len(self.script.chunks) >= crash_at:
            raise RuntimeError("engine died")
        prompts = [prompt_of(request) for request in requests]
        self.script.chunks.append((self.model_name, prompts))
        results = []
        for index, prompt in enumerate(prompts):
            if len(results) == self.script.interrupt_after:
                raise KeyboardInterrupt
            result = (
                LLMResult(None, error="HTTP 503")
                if prompt in self.script.failing
                else LLMResult(f"echo: {prompt}", "stop", 10, len(prompt), latency_s=0.01)
            )
            if on_result is not None:
                on_result(index, result)
            results.append(result)
        return results

    def close(self) -> None:
        self.script.closed.append(self.model_name)


def run_with(
    opener: EngineOpener,
    requests: list[tuple[str, LLMRequest]],
    storage: Storage,
    config: PipelineConfig,
    run_id: str | None = None,
) -> tuple[dict[str, dict[str, Any]], RunStats]:
    """`run_requests` with a pool of its own, closed afterwards (as a run's is)."""
    with EnginePool(opener) as engines:
        return run_requests(requests, storage, config, engines, run_id)


def prompt_of(request: LLMRequest) -> str:
    return request.messages[-1]["content"]


def req(prompt: str, model: str = "models/gen-a", seed: int = 1) -> LLMRequest:
    return LLMRequest(model, [{"role": "user", "content": prompt}], SamplingParams(), seed)


def pairs(*prompts: str, model_name: str = "gen-a") -> list[tuple[str, LLMRequest]]:
    return [(model_name, req(p, model=f"models/{model_name}")) for p in prompts]


def cached_call_count(storage: Storage) -> int:
    return storage.table_counts()["llm_calls"]


def with_chunk_size(config: PipelineConfig, size: int) -> PipelineConfig:
    """Chunks of `size`: they pace a token budget, so a budget is set (one never reached)."""
    raw = config.model_dump(mode="json")
    raw["engine"] = {"chunk_size": size, "token_budget": 10**9}
    return PipelineConfig.model_validate(raw)


def test_first_run_asks_each_unique_request_once(storage: Storage, config: PipelineConfig) -> None:
    engines = ScriptedEngines()
    requests = pairs("a", "b", "a", "c") + pairs("z", model_name="gen-b")
    answers, stats = run_with(engines, requests, storage, config)
    assert sorted(engines.asked) == ["a", "b", "c", "z"]
    assert sorted(engines.opened) == ["gen-a", "gen-b"]
    assert sorted(engines.closed) == ["gen-a", "gen-b"]
    assert stats.requested == 5
    assert stats.engine_calls == 4
    assert stats.cache_hits == 0
    assert stats.per_model_calls == {"gen-a": 3, "gen-b": 1}
    assert stats.prompt_tokens == 40
    assert len(answers) == 4
    assert answers[req("b").call_id]["response"] == "echo: b"
    assert cached_call_count(storage) == 4


def test_second_run_is_served_from_the_cache(storage: Storage, config: PipelineConfig) -> None:
    requests = pairs("a", "b", "c")
    first, _ = run_with(ScriptedEngines(), requests, storage, config)
    engines = ScriptedEngines()
    second, stats = run_with(engines, requests, storage, config)
    assert engines.chunks == []
    assert engines.opened == []  # no engine is even loaded
    assert stats.engine_calls == 0
    assert stats.cache_hits == 3
    assert first.keys() == second.keys()
    fields = ("call_id", "model", "request", "response", "finish_reason", "completion_tokens")
    for call_id in first:
        assert {k: first[call_id][k] for k in fields} == {k: second[call_id][k] for k in fields}
    assert cached_call_count(storage) == 3


def test_a_changed_request_misses_the_cache(storage: Storage, config: PipelineConfig) -> None:
    run_with(ScriptedEngines(), pairs("a"), storage, config)
    engines = ScriptedEngines()
    other_seed = [("gen-a", req("a", seed=2))]
    run_with(engines, other_seed, storage, config)
    assert engines.asked == ["a"]
    assert cached_call_count(storage) == 2


def test_failed_requests_are_an_outcome_and_a_rerun_asks_only_them(
    storage: Storage, config: PipelineConfig
) -> None:
    config = with_chunk_size(config, 2)
    requests = pairs("p1", "p2", "p3", "p4", "p5")
    broken = ScriptedEngines(failing={"p4", "p5"})
    answers, stats = run_with(broken, requests, storage, config)
    assert (stats.failed, dict(stats.failed_by_kind)) == (2, {"HTTP 503": 2})
    assert [answers[r.call_id].get("error") for _, r in requests] == [None] * 3 + ["HTTP 503"] * 2
    assert [chunk for _, chunk in broken.chunks] == [["p1", "p2"], ["p3", "p4"], ["p5"]]
    assert broken.closed == ["gen-a"]
    cached = storage.query("SELECT response FROM llm_calls ORDER BY response")["response"]
    assert cached.to_list() == ["echo: p1", "echo: p2", "echo: p3"]
    assert storage.query("SELECT count(*) AS n FROM failed_calls")["n"][0] == 2

    healthy = ScriptedEngines()
    answers, stats = run_with(healthy, requests, storage, config)
    assert healthy.asked == ["p4", "p5"]
    assert (stats.cache_hits, stats.engine_calls, stats.failed) == (3, 2, 0)
    assert [answers[r.call_id]["response"] for _, r in requests] == [
        f"echo: p{i}" for i in range(1, 6)
    ]
    assert storage.query("SELECT count(*) AS n FROM failed_calls")["n"][0] == 0


def test_a_request_that_fails_in_max_failed_runs_runs_is_not_asked_again_until_retried(
    storage: Storage, config: PipelineConfig
) -> None:
    requests = pairs("ok", "bad")
    runs = config.engine.max_failed_runs
    for run in range(1, runs + 1):
        broken = ScriptedEngines(failing={"bad"})
        run_with(broken, requests, storage, config)
        assert broken.asked == (["bad"] if run > 1 else ["bad", "ok"])  # sorted by text
        assert storage.failures([req("bad").call_id])[req("bad").call_id]["runs"] == run
    idle = ScriptedEngines(failing={"bad"})
    answers, stats = run_with(idle, requests, storage, config)
    assert idle.opened == []  # nothing to ask: the only unanswered request is given up
    assert (stats.failed, stats.given_up) == (1, 1)
    assert answers[req("bad").call_id]["error"].startswith(f"GivenUp: failed in {runs} runs")
    assert answers[req("bad").call_id]["error"].endswith("last error: HTTP 503")

    assert storage.retry_failures() == 1
    healthy = ScriptedEngines()
    answers, stats = run_with(healthy, requests, storage, config)
    assert healthy.asked == ["bad"]
    assert (stats.failed, answers[req("bad").call_id]["response"]) == (0, "echo: bad")


def test_answers_are_saved_as_they_arrive_and_an_interrupt_keeps_them(
    storage: Storage, config: PipelineConfig
) -> None:
    """One chunk of six (the default chunk size is far larger); Ctrl-C after three answers:
    the three are in the cache, and the rerun asks only the other three."""
    requests = pairs(*(f"q{i}" for i in range(6)))
    interrupted = ScriptedEngines(interrupt_after=3)
    with pytest.raises(KeyboardInterrupt):
        run_with(interrupted, requests, storage, config)
    assert interrupted.closed == ["gen-a"]
    assert cached_call_count(storage) == 3
    rerun = ScriptedEngines()
    run_with(rerun, requests, storage, config)
    assert rerun.asked == ["q3", "q4", "q5"]


def test_engine_crash_keeps_the_chunks_written_before_it(
    storage: Storage, config: PipelineConfig
) -> None:
    config = with_chunk_size(config, 2)
    requests = pairs("p1", "p2", "p3", "p4", "p5")
    crashing = ScriptedEngines(crash_after_chunks=2)
    expected = (
        r"model 'gen-a' \(.*\) failed on chunk 3 of 3: RuntimeError: engine died\. "
        r"4 of this stage's 5 distinct requests are cached"
    )
    with pytest.raises(EngineFailed, match=expected):
        run_with(crashing, requests, storage, config)
    assert crashing.closed == ["gen-a"]  # closed even though it raised
    assert cached_call_count(storage) == 4

    healthy = ScriptedEngines()
    run_with(healthy, requests, storage, config)
    assert healthy.asked == ["p5"]


@pytest.mark.parametrize(
    ("error", "about_memory"),
    [
        (ValueError("No available memory for the cache blocks."), True),
        (
            ValueError(
                "To serve at least one request with the model's max seq len (4096), (0.5 GiB KV "
                "cache is needed, which is larger than the available KV cache memory (0.1 GiB)."
            ),
            True,
        ),
        (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (MemoryError(), True),
        (ValueError("KV cache dtype fp8 is not supported on this device"), False),
    ],
)
def test_an_engine_that_cannot_start_says_why_and_whether_memory_is_the_cause(
    storage: Storage, config: PipelineConfig, error: Exception, about_memory: bool
) -> None:
    def failing_start(config: PipelineConfig, model_name: str) -> ScriptedEngine:
        raise error

    with pytest.raises(EngineFailed, match=f"failed to start: {type(error).__name__}") as raised:
        run_with(failing_start, pairs("p1"), storage, config)
    assert ("It ran out of memory" in str(raised.value)) == about_memory
    assert cached_call_count(storage) == 0


def test_token_budget_stops_between_chunks_and_a_new_run_goes_on(
    storage: Storage, config: PipelineConfig
) -> None:
    raw = config.model_dump(mode="json")
    raw["engine"] = {"chunk_size": 2, "token_budget": 45}
    budgeted = PipelineConfig.model_validate(raw)
    engines = ScriptedEngines()
    requests = pairs("q0", "q1", "q2", "q3", "q4", "q5")
    # Each answer costs 10 prompt + 2 completion tokens: 24 per chunk of two. After two
    # chunks (48 tokens) the budget of 45 is spent and the third chunk is not sent.
    with pytest.raises(TokenBudgetReached, match="used 48 tokens of engine.token_budget 45"):
        run_with(engines, requests, storage, budgeted, run_id="run-1")
    assert engines.asked == ["q0", "q1", "q2", "q3"]
    assert storage.tokens_spent("run-1") == 48
    assert cached_call_count(storage) == 4
    # The next run has a budget of its own and asks only what is not cached yet.
    answers, stats = run_with(engines, requests, storage, budgeted, run_id="run-2")
    assert engines.asked[4:] == ["q4", "q5"]
    assert (len(answers), stats.engine_calls, stats.cache_hits) == (6, 2, 4)


def test_answers_of_a_killed_run_are_recovered_from_its_journal(
    storage: Storage, config: PipelineConfig
) -> None:
    """A run killed before its answers reached DuckDB: they are in its journal, and the next
    run moves them into the cache instead of asking again."""
    requests = pairs("k0", "k1", "k2")
    saver = AnswerSaver(storage, "killed-run", interval_s=3600)
    for index, (_, request) in enumerate(requests[:2]):
        saver.add(request, LLMResult(f"echo: {prompt_of(request)}", "stop", 10, 2))
        if index == 0:
            saver.flush()  # the first reaches DuckDB, the second is only journaled
    assert cached_call_count(storage) == 1
    # (the process dies here: no flush, no exit)
    rerun = ScriptedEngines()
    answers, stats = run_with(rerun, requests, storage, config)
    assert rerun.asked == ["k2"]
    assert stats.cache_hits == 2
    assert answers[requests[0][1].call_id]["run_id"] == "killed-run"
    assert list(journal_dir(storage).iterdir()) == []


def test_answers_reach_duckdb_once_per_interval_and_at_the_end(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each write opens the file (tens of milliseconds): a stage shorter than the interval
    writes once, at the end, not its first answer alone and then the rest."""
    writes: list[int] = []
    real_write = Storage.save_calls

    def counted(self: Storage, answered: list, failed: list) -> None:
        writes.append(len(answered) + len(failed))
        real_write(self, answered, failed)

    monkeypatch.setattr(Storage, "save_calls", counted)
    with AnswerSaver(storage, "run", interval_s=3600) as saver:
        for _, request in pairs("i0", "i1", "i2"):
            saver.add(request, LLMResult(f"echo: {prompt_of(request)}", "stop", 10, 2))
        assert writes == []
    assert writes == [3] and cached_call_count(storage) == 3


def test_without_a_token_budget_a_models_requests_go_in_one_call(
    storage: Storage, config: PipelineConfig
) -> None:
    """A chunk boundary would let the engine run dry while a chunk's last requests finish."""
    raw = config.model_dump(mode="json")
    raw["engine"] = {"chunk_size": 2}
    engines = ScriptedEngines()
    run_with(
        engines, pairs("p1", "p2", "p3", "p4", "p5"), storage, PipelineConfig.model_validate(raw)
    )
    assert [chunk for _, chunk in engines.chunks] == [["p1", "p2", "p3", "p4", "p5"]]


def test_a_failed_cache_write_is_raised_even_after_a_later_one_succeeds(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes run on a thread: the first fails, the second succeeds; leaving the saver
    still raises, and the journal stays for the next run to recover."""
    real_write = Storage.save_calls
    calls: list[int] = []

    def flaky_write(*args: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.3)  # still running when the second write is handed over
            raise OSError("disk full")
        real_write(*args)

    monkeypatch.setattr(Storage, "save_calls", flaky_write)
    requests = pairs("w0", "w1")
    with (
        pytest.raises(OSError, match="disk full"),
        AnswerSaver(storage, "run", interval_s=0) as saver,
    ):
        for _, request in requests:
            saver.add(request, LLMResult(f"echo: {prompt_of(request)}", "stop", 10, 2))
    assert len(calls) == 2
    assert list(journal_dir(storage).iterdir()) != []
