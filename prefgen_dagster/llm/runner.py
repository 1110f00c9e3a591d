"""Runs a stage's LLM requests through the `llm_calls` cache and the engines.

Only requests missing from the cache reach an engine; each model's missing requests go to
its engine (from the run's `EnginePool`) as one stage-wide batch, ordered so that requests
sharing a prompt prefix are next to each other (the engine's prefix cache then reuses it),
and every answer is saved as it arrives (`saver.py`), so a crash or an interrupt loses only
the requests in flight.

A request that still fails after the engine's retries is an outcome, not a crash: it is
noted in `failed_calls` with its error, and the stage goes on with what it has (its rows for
that request carry the error). A rerun asks it again, until it has failed in
`engine.max_failed_runs` runs; then it stays failed until `prefgen retry-failed`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.llm.plan import Planned
from prefgen_dagster.llm.pool import EnginePool
from prefgen_dagster.llm.progress import Progress
from prefgen_dagster.llm.saver import AnswerSaver, recover_journals
from prefgen_dagster.llm.types import LLMRequest, LLMResult
from prefgen_dagster.storage.store import Storage


class EngineFailed(RuntimeError):
    """An engine could not start or raised mid-stage (a vLLM error, out of memory): the stage
    stops; every answer that arrived before is cached, so a rerun sends only the rest."""


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
    # Requests behind rows kept from an earlier run (`reuse.py`): neither asked nor looked up.
    reused: int = 0
    engine_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    engine_seconds: float = 0.0
    # Engines this stage started (a model the run's pool already held costs none).
    engine_starts: int = 0
    engine_start_seconds: float = 0.0
    # Distinct requests with no answer: failed in this run, or given up after earlier runs.
    failed: int = 0
    given_up: int = 0
    per_model_calls: dict[str, int] = field(default_factory=dict)
    failed_by_kind: Counter[str] = field(default_factory=Counter)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "llm_requests": self.requested,
            "llm_cache_hits": self.cache_hits,
            "llm_reused": self.reused,
            "llm_engine_calls": self.engine_calls,
            "llm_failed": self.failed,
            "llm_given_up": self.given_up,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "engine_seconds": round(self.engine_seconds, 3),
            "engine_starts": self.engine_starts,
            "engine_start_seconds": round(self.engine_start_seconds, 3),
        }

    def add(self, other: RunStats) -> None:
        for counted in fields(self):  # the numbers add up; the two tallies merge below
            value = getattr(self, counted.name)
            if isinstance(value, int | float):
                setattr(self, counted.name, value + getattr(other, counted.name))
        for model, count in other.per_model_calls.items():
            self.per_model_calls[model] = self.per_model_calls.get(model, 0) + count
        self.failed_by_kind.update(other.failed_by_kind)


def run_requests(
    requests: Sequence[tuple[str, LLMRequest]],
    storage: Storage,
    config: PipelineConfig,
    engines: EnginePool,
    run_id: str | None = None,
) -> tuple[dict[str, dict[str, Any]], RunStats]:
    """Answer `(model_name, request)` pairs; returns a row per distinct call id (an
    `llm_calls` row, or for a failed request one whose `error` says why), and counts.
    Engines come from `engines` and stay there for later stages.

    With `engine.token_budget` set, the tokens that the engine spent for `run_id` (all stages
    of one Dagster run) are checked before every chunk of `engine.chunk_size` requests, and
    the stage stops with `TokenBudgetReached` once they reach the budget; what finished is
    cached. Without a budget a model's requests go in one piece (a chunk boundary lets the
    engine run out of work while its last requests finish).
    """
    stats = RunStats(requested=len(requests))
    recover_journals(storage)  # answers a killed run got but had not yet written
    unique: dict[str, tuple[str, LLMRequest]] = {}
    for model_name, request in requests:
        unique.setdefault(request.call_id, (model_name, request))
    answers = _known_answers(requests, unique, storage, config, stats)
    cached = Counter(model_name for model_name, r in unique.values() if r.call_id in answers)
    missing: dict[str, list[LLMRequest]] = {}
    for call_id, (model_name, request) in unique.items():
        if call_id not in answers:
            missing.setdefault(model_name, []).append(request)
    # Models already loaded first: with `max_loaded_models` set, the others may push them out.
    for model_name in sorted(missing, key=lambda name: name not in engines.loaded):
        asked = _Asked(model_name, prefix_order(missing[model_name]), answers, unique)
        _answer_model(asked, cached[model_name], storage, config, engines, run_id, stats)
    for row in answers.values():
        stats.prompt_tokens += row.get("prompt_tokens") or 0
        stats.completion_tokens += row.get("completion_tokens") or 0
        if "error" in row:
            stats.failed_by_kind[row["error"].split(":", 1)[0].strip()] += 1
    stats.failed = sum(1 for row in answers.values() if "error" in row)
    return answers, stats


def _known_answers(
    requests: Sequence[tuple[str, LLMRequest]],
    unique: dict[str, tuple[str, LLMRequest]],
    storage: Storage,
    config: PipelineConfig,
    stats: RunStats,
) -> dict[str, dict[str, Any]]:
    """What needs no engine: the cached answers, and the requests given up on after
    `engine.max_failed_runs` failed runs (as failed rows)."""
    with storage.session():  # one connection for both lookups
        answers = storage.cached_calls(list(unique))
        unanswered = [call_id for call_id in unique if call_id not in answers]
        failures = storage.failures(unanswered)
    stats.cache_hits = sum(1 for model_name, request in requests if request.call_id in answers)
    for call_id, failure in failures.items():
        if failure["runs"] >= config.engine.max_failed_runs:
            answers[call_id] = _given_up(failure)
            stats.given_up += 1
    return answers


@dataclass
class _Asked:
    """One model's share of a stage's requests, and the stage's answers so far."""

    model_name: str
    pending: list[LLMRequest]
    answers: dict[str, dict[str, Any]]
    unique: dict[str, tuple[str, LLMRequest]]


def _answer_model(
    asked: _Asked,
    cached: int,
    storage: Storage,
    config: PipelineConfig,
    engines: EnginePool,
    run_id: str | None,
    stats: RunStats,
) -> None:
    """Ask one model its pending requests (in chunks under a token budget), adding what
    comes back to `asked.answers` as it arrives."""
    model_name, pending = asked.model_name, asked.pending
    answers, unique = asked.answers, asked.unique
    starts, start_seconds = len(engines.starts), engines.start_seconds
    try:
        engine = engines.get(config, model_name)
    except Exception as err:
        raise engine_failure(config, model_name, "to start", err, answers, unique) from err
    stats.engine_starts += len(engines.starts) - starts
    stats.engine_start_seconds += engines.start_seconds - start_seconds
    progress = Progress(model_name, len(pending), cached=cached)
    # Leaving the saver writes what arrived, also on an interrupt or an engine error.
    with AnswerSaver(storage, run_id, config.engine.save_interval_s) as saver:
        budget = config.engine.token_budget
        chunk_size = len(pending) if budget is None else config.engine.chunk_size
        for start in range(0, len(pending), chunk_size):
            unasked = len(unique) - len(answers) - len(saver.rows)
            _check_budget(storage, config, run_id, unasked)
            chunk = pending[start : start + chunk_size]
            began = time.perf_counter()
            try:
                results = engine.generate(chunk, partial(_save_one, saver, progress, chunk))
            except Exception as err:
                answers.update(saver.rows)
                number = start // chunk_size + 1
                when = f"on chunk {number} of {-(-len(pending) // chunk_size)}"
                raise engine_failure(config, model_name, when, err, answers, unique) from err
            for index, result in enumerate(results):
                _save_one(saver, progress, chunk, index, result)
            saver.flush()  # the token budget reads what the cache holds
            stats.engine_seconds += time.perf_counter() - began
            stats.engine_calls += len(chunk)
            calls = stats.per_model_calls
            calls[model_name] = calls.get(model_name, 0) + len(chunk)
    answers.update(saver.rows)


def prefix_order(requests: Sequence[LLMRequest]) -> list[LLMRequest]:
    """The requests sorted by their messages, role and text in turn: requests that share a
    prompt prefix (a system prompt, an instruction, a judge rubric with the same
    instruction) end up next to each other, so the engine still has that prefix cached.
    Each request carries its own seed, so the order changes no answer."""
    return sorted(
        requests,
        key=lambda request: [part for m in request.messages for part in (m["role"], m["content"])],
    )


def _save_one(
    saver: AnswerSaver,
    progress: Progress,
    chunk: Sequence[LLMRequest],
    index: int,
    result: LLMResult,
) -> None:
    """Keep one result (once) and count it."""
    if saver.add(chunk[index], result):
        progress.add(result)


def _given_up(failure: dict[str, Any]) -> dict[str, Any]:
    return {
        **failure,
        "error": f"GivenUp: failed in {failure['runs']} runs, not asked again until `prefgen "
        f"retry-failed`; last error: {failure['error']}",
    }


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


def ask(
    plans: list[Planned],
    storage: Storage,
    config: PipelineConfig,
    engines: EnginePool,
    total: RunStats,
    run_id: str | None,
) -> dict[str, dict[str, Any]]:
    """Answer a stage's planned requests (see `run_requests`), adding the counts to `total`."""
    answers, stats = run_requests(
        [(p.model_name, p.request) for p in plans], storage, config, engines, run_id
    )
    total.add(stats)
    return answers
