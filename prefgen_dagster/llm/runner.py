"""Runs a stage's LLM requests through the `llm_calls` cache and the engines.

Only requests missing from the cache reach an engine; each model's missing requests go to
its engine as one stage-wide batch, cut into chunks only so that every finished chunk is
written to the cache at once (a crash loses at most one chunk of work).

A request that still fails after the engine's retries is noted in the `failed_calls` table
(and dropped from it once a later run gets its answer); the stage then fails with
`LLMCallsFailed`, and since everything else is cached, a rerun asks only the failed ones.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.llm.plan import Planned
from prefgen_dagster.llm.types import Engine, LLMRequest, LLMResult
from prefgen_dagster.storage.store import Storage

EngineFactory = Callable[[PipelineConfig, str], Engine]


class LLMCallsFailed(RuntimeError):
    """Some requests still failed after the engine's retries; the rest are cached.

    `by_kind` counts the failures per error kind (the part of the error before its first
    colon, e.g. `RateLimitError`); the failed calls are also in the `failed_calls` table.
    """

    def __init__(
        self,
        message: str,
        by_kind: dict[str, int] | None = None,
        failed_call_ids: Sequence[str] = (),
    ):
        super().__init__(message)
        self.by_kind = dict(by_kind or {})
        self.failed_call_ids = list(failed_call_ids)


class EngineFailed(RuntimeError):
    """An engine could not start or raised mid-stage (a vLLM error, out of memory): the stage
    stops; every chunk answered before is cached, so a rerun sends only the rest."""


# Words in an engine's error that point at memory rather than at a request.
_MEMORY_WORDS = (
    "out of memory",  # torch: "CUDA out of memory"
    "no available memory",  # vLLM: no room for a single KV cache block
    "available kv cache memory",  # vLLM: max_model_len does not fit the KV cache
    "cannot allocate memory",
)
_MEMORY_HINT = (
    " It ran out of memory: lower max_model_len (or max_num_seqs), or give the engine more"
    " (gpu_memory_utilization, or kv_cache_memory_bytes on CPU)."
)


def engine_failure(
    config: PipelineConfig,
    model_name: str,
    when: str,
    error: BaseException,
    answered: dict[str, Any],
    distinct: dict[str, Any],
) -> EngineFailed:
    """The message a user reads when an engine dies: which model, when, why, what is kept."""
    detail = f"{type(error).__name__}: {error}"
    memory = isinstance(error, MemoryError) or any(w in detail.lower() for w in _MEMORY_WORDS)
    return EngineFailed(
        f"model {model_name!r} ({config.models[model_name].path}) failed {when}: {detail}."
        f"{_MEMORY_HINT if memory else ''} {len(answered)} of this stage's {len(distinct)}"
        " distinct requests are cached; a rerun sends only the others."
    )


class TokenBudgetReached(RuntimeError):
    """The run spent its token budget; the stage stopped between chunks, nothing is lost."""


@dataclass
class RunStats:
    requested: int = 0
    cache_hits: int = 0
    engine_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    engine_seconds: float = 0.0
    per_model_calls: dict[str, int] = field(default_factory=dict)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "llm_requests": self.requested,
            "llm_cache_hits": self.cache_hits,
            "llm_engine_calls": self.engine_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "engine_seconds": round(self.engine_seconds, 3),
        }

    def add(self, other: RunStats) -> None:
        for name in ("requested", "cache_hits", "engine_calls"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.engine_seconds += other.engine_seconds
        for model, count in other.per_model_calls.items():
            self.per_model_calls[model] = self.per_model_calls.get(model, 0) + count


def open_engine(config: PipelineConfig, model_name: str) -> Engine:
    """A real engine for one model of the config (imports the backend lazily)."""
    spec = config.models[model_name]
    if spec.backend == "vllm":
        from prefgen_dagster.llm.engines.vllm_offline import VLLMOfflineEngine

        return VLLMOfflineEngine(config.model_location(model_name), spec)
    from prefgen_dagster.llm.engines.openai_http import OpenAIHTTPEngine

    return OpenAIHTTPEngine(spec)


def run_requests(
    requests: Sequence[tuple[str, LLMRequest]],
    storage: Storage,
    config: PipelineConfig,
    engine_factory: EngineFactory = open_engine,
    run_id: str | None = None,
) -> tuple[dict[str, dict[str, Any]], RunStats]:
    """Answer `(model_name, request)` pairs; returns cached rows by call id, and counts.

    With `engine.token_budget` set, the tokens that the engine spent for `run_id` (all stages
    of one Dagster run) are checked before every chunk, and the stage stops with
    `TokenBudgetReached` once they reach the budget; what finished is cached.
    """
    stats = RunStats(requested=len(requests))
    unique: dict[str, tuple[str, LLMRequest]] = {}
    for model_name, request in requests:
        unique.setdefault(request.call_id, (model_name, request))
    answers = storage.cached_calls(list(unique))
    stats.cache_hits = sum(1 for model_name, request in requests if request.call_id in answers)

    missing: dict[str, list[LLMRequest]] = {}
    for call_id, (model_name, request) in unique.items():
        if call_id not in answers:
            missing.setdefault(model_name, []).append(request)

    failures: list[tuple[str, dict[str, Any]]] = []  # (model name, failed_calls row)
    for model_name, pending in missing.items():
        try:
            engine = engine_factory(config, model_name)
        except Exception as err:
            raise engine_failure(config, model_name, "to start", err, answers, unique) from err
        try:
            chunk_size = config.engine.chunk_size
            for start in range(0, len(pending), chunk_size):
                _check_budget(storage, config, run_id, len(unique) - len(answers))
                chunk = pending[start : start + chunk_size]
                began = time.perf_counter()
                try:
                    results = engine.generate(chunk)
                except Exception as err:
                    number = start // chunk_size + 1
                    when = f"on chunk {number} of {-(-len(pending) // chunk_size)}"
                    raise engine_failure(config, model_name, when, err, answers, unique) from err
                stats.engine_seconds += time.perf_counter() - began
                stats.engine_calls += len(chunk)
                stats.per_model_calls[model_name] = stats.per_model_calls.get(model_name, 0) + len(
                    chunk
                )
                finished, failed = [], []
                for request, result in zip(chunk, results, strict=True):
                    if result.error is None:
                        finished.append(_cache_row(request, result, run_id))
                    else:
                        failed.append(_failure_row(request, result))
                storage.store_calls(finished)
                storage.record_failures(failed)
                storage.clear_failures([row["call_id"] for row in finished])
                answers.update({row["call_id"]: row for row in finished})
                failures.extend((model_name, row) for row in failed)
        finally:
            engine.close()

    for row in answers.values():
        stats.prompt_tokens += row["prompt_tokens"] or 0
        stats.completion_tokens += row["completion_tokens"] or 0
    if failures:
        raise _calls_failed(failures, len(unique))
    return answers, stats


def _check_budget(
    storage: Storage, config: PipelineConfig, run_id: str | None, unanswered: int
) -> None:
    budget = config.engine.token_budget
    if budget is None or run_id is None:
        return
    spent = storage.tokens_spent(run_id)
    if spent >= budget:
        raise TokenBudgetReached(
            f"token budget reached: this run's engine calls used {spent} tokens of "
            f"engine.token_budget {budget}; {unanswered} requests of this stage are not asked. "
            "Finished calls are cached: rerun (a new run gets a new budget) to go on."
        )


def _cache_row(request: LLMRequest, result: LLMResult, run_id: str | None) -> dict[str, Any]:
    return {
        "call_id": request.call_id,
        "run_id": run_id,
        "model": request.model,
        "request": json.dumps(request.as_json(), ensure_ascii=False),
        "response": result.text,
        "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "latency_s": result.latency_s,
    }


def _failure_row(request: LLMRequest, result: LLMResult) -> dict[str, Any]:
    return {
        "call_id": request.call_id,
        "model": request.model,
        "error": result.error,
        "attempts": result.extra.get("attempts"),
    }


def _calls_failed(failures: list[tuple[str, dict[str, Any]]], unique: int) -> LLMCallsFailed:
    """The stage's failure: how many, of which kinds, where they are, and a few examples."""
    by_kind = Counter(row["error"].split(":", 1)[0].strip() for _, row in failures)
    kinds = ", ".join(f"{kind}: {count}" for kind, count in by_kind.most_common())
    examples = "\n  ".join(
        f"{model_name} {row['call_id']}"
        + (f" after {row['attempts']} attempts" if row["attempts"] else "")
        + f": {row['error']}"
        for model_name, row in failures[:5]
    )
    return LLMCallsFailed(
        f"{len(failures)} of {unique} LLM requests failed after retries ({kinds}); the other "
        f"{unique - len(failures)} are cached, the failed ones are listed in the failed_calls "
        f"table, and a rerun asks only those. First failures:\n  {examples}",
        by_kind=by_kind,
        failed_call_ids=[row["call_id"] for _, row in failures],
    )


def ask(
    plans: list[Planned],
    storage: Storage,
    config: PipelineConfig,
    engine_factory: EngineFactory,
    total: RunStats,
    run_id: str | None,
) -> dict[str, dict[str, Any]]:
    """Answer a stage's planned requests (see `run_requests`), adding the counts to `total`."""
    answers, stats = run_requests(
        [(p.model_name, p.request) for p in plans], storage, config, engine_factory, run_id
    )
    total.add(stats)
    return answers
