"""Any OpenAI-compatible server: bounded concurrency, retries with backoff, several base URLs.

Retries are done here rather than by the `openai` client (whose own retries are turned
off): the client retries 408/409/429/5xx, timeouts and dropped connections, but takes a 200
whose body is not a chat completion (bad JSON, no `choices`) as an answer. One loop covers
every fault the same way and keeps each request bounded in attempts and in time:

* at most `max_retries + 1` attempts; a retry goes to the next base URL, so one bad replica
  does not fail its share of the requests;
* between attempts, exponential backoff with jitter, or the server's `Retry-After` when it
  asks for longer;
* all attempts and waits of one request fit in `max_attempts * (timeout_s + BACKOFF_CAP_S)`
  from the moment it gets a concurrency slot; a wait that would end past that deadline is not
  made, and an answer still arriving at the deadline (a server trickling bytes, which no
  read timeout catches) is cut off.

A request that still fails comes back as `LLMResult(error="<Kind>: <message>")` with the
number of attempts in `extra["attempts"]`; `generate` never raises for one request.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import random
import time
from collections.abc import Sequence
from typing import Any

import openai

from prefgen_dagster.config.base import ModelSpec
from prefgen_dagster.llm.types import LLMRequest, LLMResult

# Backoff before retry n (0-based) is min(CAP, BASE * 2**n), scaled by a random 0.5-1.0 so
# that requests which failed together do not all come back together.
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
RETRYABLE_STATUS = frozenset({408, 409, 429})  # and every 5xx
MAX_ERROR_CHARS = 500


class MalformedResponse(Exception):
    """A 2xx answer whose body is not a chat completion."""


class DeadlineExceeded(Exception):
    """The request's attempts and waits used up its time budget."""


class OpenAIHTTPEngine:
    """Sends a stage's requests concurrently, spread round-robin over the base URLs."""

    def __init__(self, spec: ModelSpec):
        self._spec = spec
        self._api_key = os.environ.get(spec.api_key_env, "") if spec.api_key_env else "none"

    @property
    def max_attempts(self) -> int:
        return self._spec.max_retries + 1

    @property
    def deadline_s(self) -> float:
        """The most time one request may take, retries and waits included."""
        return self.max_attempts * (self._spec.timeout_s + BACKOFF_CAP_S)

    def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        if not requests:
            return []
        return asyncio.run(self._generate_all(requests))

    async def _generate_all(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        clients = [
            openai.AsyncOpenAI(
                base_url=url,
                api_key=self._api_key or "none",
                timeout=self._spec.timeout_s,
                max_retries=0,
            )
            for url in self._spec.base_urls
        ]
        limit = asyncio.Semaphore(self._spec.max_concurrency)
        try:
            return await asyncio.gather(
                *(
                    self._generate_one(index, request, clients, limit)
                    for index, request in enumerate(requests)
                )
            )
        finally:
            for client in clients:
                await client.close()

    async def _generate_one(
        self,
        index: int,
        request: LLMRequest,
        clients: list[openai.AsyncOpenAI],
        limit: asyncio.Semaphore,
    ) -> LLMResult:
        """One request with its retries. The concurrency slot is kept while backing off, so
        an overloaded server sees fewer requests, not more."""
        kwargs = self._request_kwargs(request)
        loop = asyncio.get_running_loop()
        async with limit:
            deadline = loop.time() + self.deadline_s
            attempt = 0
            while True:
                client = clients[(index + attempt) % len(clients)]
                attempt += 1
                started = time.perf_counter()
                try:
                    result = await asyncio.wait_for(
                        _ask(client, kwargs), timeout=max(deadline - loop.time(), 0.0)
                    )
                except TimeoutError:
                    late = DeadlineExceeded(f"no complete answer within {self.deadline_s:.1f} s")
                    return _failed(late, attempt)
                except Exception as err:  # every failure is reported per request, never raised
                    wait = _wait_before_retry(err, attempt - 1)
                    if (
                        wait is None
                        or attempt == self.max_attempts
                        or loop.time() + wait >= deadline
                    ):
                        return _failed(err, attempt)
                    await asyncio.sleep(wait)
                    continue
                result.latency_s = time.perf_counter() - started
                result.extra["attempts"] = attempt
                return result

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
    elif not isinstance(err, openai.APIConnectionError | MalformedResponse):
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


def _failed(err: Exception, attempts: int) -> LLMResult:
    text = f"{type(err).__name__}: {err}"
    if isinstance(err, openai.APIConnectionError) and err.__cause__ is not None:
        text += f" ({type(err.__cause__).__name__}: {err.__cause__})"
    return LLMResult(text=None, error=text[:MAX_ERROR_CHARS], extra={"attempts": attempts})
