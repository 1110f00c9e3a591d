"""Any OpenAI-compatible server: a fleet of base URLs, adaptive concurrency, retries with backoff.

Retries are done here rather than by the `openai` client (whose own retries are turned
off): the client retries 408/409/429/5xx, timeouts and dropped connections, but takes a 200
whose body is not a chat completion (bad JSON, no `choices`) as an answer. One loop covers
every fault and keeps each request bounded in attempts and in time:

* each attempt goes to the server of the model's `base_urls` with the most room for it, and
  a retry to another one than the last if it can; a server whose attempts keep failing is
  taken out for a cool-down (`fleet`);
* an overload reply (429, 503) halves the server's concurrency (`pacing.AdaptiveLimit`) and
  is retried after the server's `Retry-After` (or a backoff) without using up a retry: the
  server is busy, not broken;
* any other retryable fault (5xx, timeouts, dropped connections, malformed bodies, an attempt
  that stalls far beyond the answers so far: `pacing.StallTimer`) uses one of `max_retries`;
* between attempts, exponential backoff with jitter, or the server's `Retry-After` when it
  asks for longer;
* every attempt and wait of one request fits in `deadline_s` from its first attempt (and
  before it, no request waits longer than that for a fleet whose servers are all out); a
  wait that would end past it is not made, and an answer still arriving then (a server
  trickling bytes, which no read timeout catches) is cut off.

A request that still fails comes back as `LLMResult(error="<Kind>: <message>")` with the
number of attempts in `extra["attempts"]`; `generate` never raises for one request. Each
result is handed to `on_result` as soon as it is known.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import math
import os
import random
import time
from collections.abc import Awaitable, Sequence
from typing import Any

import openai

from prefgen_dagster.config.base import ModelSpec
from prefgen_dagster.llm.engines.fleet import (
    DeadlineExceeded,
    Fleet,
    Outcome,
    Server,
    ServersCoolingDown,
)
from prefgen_dagster.llm.engines.pacing import StallTimer
from prefgen_dagster.llm.engines.signals import run_interruptibly
from prefgen_dagster.llm.types import LLMRequest, LLMResult, OnResult

# Backoff before retry n (0-based) is min(CAP, BASE * 2**n), scaled by a random 0.5-1.0 so
# that requests which failed together do not all come back together.
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
RETRYABLE_STATUS = frozenset({408, 409, 429})  # and every 5xx
OVERLOAD_STATUS = frozenset({429, 503})

MAX_ERROR_CHARS = 500


class MalformedResponse(Exception):
    """A 2xx answer whose body is not a chat completion."""


class StalledAttempt(Exception):
    """An attempt took far longer than the server's answers so far (see `pacing`)."""


class OpenAIHTTPEngine:
    """Sends a stage's requests concurrently over the model's fleet of base URLs."""

    def __init__(self, spec: ModelSpec):
        self._spec = spec
        self._api_key = os.environ.get(spec.api_key_env, "") if spec.api_key_env else "none"

    @property
    def max_attempts(self) -> int:
        """Attempts that may end in an error; overload replies come on top, bounded by time."""
        return self._spec.max_retries + 1

    def generate(
        self, requests: Sequence[LLMRequest], on_result: OnResult | None = None
    ) -> list[LLMResult]:
        if not requests:
            return []
        ignore: OnResult = lambda _index, _result: None  # noqa: E731 (a caller wants the list)
        return run_interruptibly(self._generate_all(requests, on_result or ignore))

    async def _generate_all(
        self, requests: Sequence[LLMRequest], on_result: OnResult
    ) -> list[LLMResult]:
        # openai's own Timeout: the HTTP library behind the client is openai's to choose (it
        # moved from httpx to httpx2, whose client rejects an httpx.Timeout).
        timeout = openai.Timeout(self._spec.timeout_s, connect=self._spec.connect_timeout_s)
        fleet = Fleet.build(
            self._spec,
            lambda url: openai.AsyncOpenAI(
                base_url=url, api_key=self._api_key or "none", timeout=timeout, max_retries=0
            ),
        )
        try:
            return await asyncio.gather(
                *(
                    self._generate_one(index, request, fleet, on_result)
                    for index, request in enumerate(requests)
                )
            )
        finally:
            for server in fleet.servers:
                await server.client.close()

    async def _generate_one(
        self, index: int, request: LLMRequest, fleet: Fleet[openai.AsyncOpenAI], on_result: OnResult
    ) -> LLMResult:
        result = await self._attempts(request, fleet)
        on_result(index, result)
        return result

    async def _attempts(self, request: LLMRequest, fleet: Fleet[openai.AsyncOpenAI]) -> LLMResult:
        """One request with its retries; a place on a server is held per attempt only."""
        kwargs = self._request_kwargs(request)
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        attempts = errors = overloads = 0
        err: Exception | None = None
        # Where the last attempt went: the next one goes elsewhere if it can.
        server: Server[openai.AsyncOpenAI] | None = None
        while True:
            try:
                ticket = await fleet.acquire(server, deadline)
            except ServersCoolingDown as out:
                last = f"; last error: {_describe(err)}" if err else ""
                return _failed(ServersCoolingDown(f"{out}{last}"), attempts)
            except DeadlineExceeded as late:
                return _failed(err or late, attempts)
            server = ticket.server
            deadline = deadline or loop.time() + self._spec.deadline_s
            attempts += 1
            started = loop.time()
            outcome: Outcome = "failed"
            try:
                result = await _watched(_ask(server.client, kwargs), server.stall, deadline)
                outcome = "answered"
            except DeadlineExceeded as late:
                # A retry cut off by the deadline: the server's own last error says more.
                return _failed(err or late, attempts)
            except Exception as error:  # every failure is reported per request, never raised
                err = error
                outcome = _outcome(err)
            finally:
                await fleet.release(ticket, outcome, err)
            if outcome == "answered":
                server.stall.record(loop.time() - started)
                result.latency_s = loop.time() - started
                result.extra["attempts"] = attempts
                return result
            if outcome == "overloaded":
                overloads += 1
                wait = _wait_before_retry(err, overloads - 1)
            else:
                errors += 1
                wait = _wait_before_retry(err, errors - 1)
                if errors == self.max_attempts:
                    return _failed(err, attempts)
            if wait is None or loop.time() + wait >= deadline:
                return _failed(err, attempts)
            await asyncio.sleep(wait)

    def _request_kwargs(self, request: LLMRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self._spec.served_name or request.model,
            "messages": request.messages,
            "temperature": request.sampling.temperature,
            "top_p": request.sampling.top_p,
            "max_tokens": request.sampling.max_tokens,
            "seed": request.seed,
        }
        if request.json_schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": request.json_schema, "strict": True},
            }
        return kwargs

    def close(self) -> None:
        """Nothing is held between calls."""


async def _watched(ask: Awaitable[LLMResult], stall: StallTimer, deadline: float) -> LLMResult:
    """Await one attempt, giving it up when it has taken far longer than the server's answers
    so far (`StalledAttempt`; the bound is looked at again as other answers come in) or when
    the request's deadline comes (`DeadlineExceeded`)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.ensure_future(ask)
    try:
        while True:
            stall_at = started + stall.timeout()
            until = min(stall_at, deadline)
            done, _ = await asyncio.wait({task}, timeout=max(min(until - loop.time(), 0.5), 0))
            if done:
                return task.result()
            if loop.time() >= deadline:
                raise DeadlineExceeded("no complete answer by the request's deadline")
            if loop.time() >= stall_at:
                raise StalledAttempt(f"no answer after {loop.time() - started:.1f} s")
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _outcome(err: Exception) -> Outcome:
    """What a failed attempt says about its server (see `fleet.Outcome`)."""
    if isinstance(err, openai.APIStatusError):
        if err.status_code in OVERLOAD_STATUS:
            return "overloaded"
        return "broken" if err.status_code >= 500 else "failed"
    if isinstance(err, openai.APIConnectionError | MalformedResponse | StalledAttempt):
        return "broken"
    return "failed"


async def _ask(client: openai.AsyncOpenAI, kwargs: dict[str, Any]) -> LLMResult:
    """One attempt. The raw body is parsed here: the client's own parsing lets a body
    without `choices` through as an empty object."""
    raw = await client.chat.completions.with_raw_response.create(**kwargs)
    return _parse_completion(raw.http_response.content)


def _parse_completion(body: bytes) -> LLMResult:
    try:
        data = json.loads(body)
    except ValueError:
        raise MalformedResponse(f"body is not JSON: {body[:200]!r}") from None
    try:
        choice = data["choices"][0]
        content = choice["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise MalformedResponse(f"no choices[0].message in {body[:200]!r}") from None
    if content is not None and not isinstance(content, str):
        raise MalformedResponse(f"message content is not text: {body[:200]!r}")
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return LLMResult(
        text=content,
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
    )


def _wait_before_retry(err: Exception, attempt: int) -> float | None:
    """Seconds to wait before retrying after `err`, or None if retrying cannot help."""
    if isinstance(err, openai.APIStatusError):
        if err.status_code not in RETRYABLE_STATUS and err.status_code < 500:
            return None
    elif not isinstance(err, openai.APIConnectionError | MalformedResponse | StalledAttempt):
        return None
    backoff = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt) * random.uniform(0.5, 1.0)
    asked = _retry_after(err)
    return backoff if asked is None else max(asked, backoff)


def _retry_after(err: Exception) -> float | None:
    """The server's requested wait (`retry-after-ms`, or `Retry-After` in seconds or as
    an HTTP date), if any."""
    if not isinstance(err, openai.APIStatusError):
        return None
    headers = err.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            seconds = float(headers[name]) * scale
        except (KeyError, ValueError):
            continue
        if not math.isnan(seconds):
            return max(seconds, 0.0)  # an infinite wait is refused by the deadline
    try:
        when = email.utils.parsedate_to_datetime(headers.get("retry-after", ""))
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _describe(err: Exception) -> str:
    text = f"{type(err).__name__}: {err}"
    if isinstance(err, openai.APIConnectionError) and err.__cause__ is not None:
        text += f" ({type(err.__cause__).__name__}: {err.__cause__})"
    return text


def _failed(err: Exception, attempts: int) -> LLMResult:
    error = _describe(err)[:MAX_ERROR_CHARS]
    return LLMResult(text=None, error=error, extra={"attempts": attempts})
