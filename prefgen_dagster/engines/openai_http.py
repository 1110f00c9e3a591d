"""Any OpenAI-compatible server: bounded concurrency, retries with backoff, several base URLs."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Sequence
from typing import Any

from prefgen_dagster.config import ModelSpec
from prefgen_dagster.engines.base import LLMRequest, LLMResult


class OpenAIHTTPEngine:
    """Sends a stage's requests concurrently, spread round-robin over the base URLs.

    Retries (429 with Retry-After, 5xx, timeouts, dropped connections) are the `openai`
    client's own: exponential backoff with jitter, at most `max_retries` per request.
    """

    def __init__(self, spec: ModelSpec):
        self._spec = spec
        self._api_key = os.environ.get(spec.api_key_env, "") if spec.api_key_env else "none"

    def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        if not requests:
            return []
        return asyncio.run(self._generate_all(requests))

    async def _generate_all(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        from openai import AsyncOpenAI

        clients = [
            AsyncOpenAI(
                base_url=url,
                api_key=self._api_key or "none",
                timeout=self._spec.timeout_s,
                max_retries=self._spec.max_retries,
            )
            for url in self._spec.base_urls
        ]
        limit = asyncio.Semaphore(self._spec.max_concurrency)
        try:
            return await asyncio.gather(
                *(
                    self._generate_one(client, request, limit)
                    for client, request in zip(itertools.cycle(clients), requests, strict=False)
                )
            )
        finally:
            for client in clients:
                await client.close()

    async def _generate_one(self, client, request: LLMRequest, limit) -> LLMResult:
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
        async with limit:
            started = time.perf_counter()
            try:
                response = await client.chat.completions.create(**kwargs)
            except Exception as err:  # every failure is reported per request, never lost
                return LLMResult(text=None, error=f"{type(err).__name__}: {err}")
        choice = response.choices[0]
        usage = response.usage
        return LLMResult(
            text=choice.message.content,
            finish_reason=choice.finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            latency_s=time.perf_counter() - started,
        )

    def close(self) -> None:
        """Nothing is held between calls."""
