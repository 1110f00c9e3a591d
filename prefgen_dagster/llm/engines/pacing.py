"""How hard to push one OpenAI-compatible server, learned from its answers.

* `AdaptiveLimit`: the number of requests in flight to one base URL (AIMD, as TCP does with
  its window). It starts at `max_concurrency`; an overload reply (429, 503) halves it, at
  most once per wave of requests (replies to requests sent before the last cut are the
  same overload, already answered); each answer adds 1/limit, so a full round of answers
  raises it by one, up to the ceiling again.
* `StallTimer`: how long an attempt may take before it counts as stalled. Until
  `STALL_SAMPLES` answers have come back only the client's `timeout_s` applies; then it is
  `STALL_FACTOR` times the 95th percentile of their latencies (never under `STALL_MIN_S`,
  never over `timeout_s`). A server that stops answering one request is thus left after a
  few seconds when its answers take a second, and retried elsewhere or again. An attempt
  already waiting is held to the bound as it tightens.
"""

from __future__ import annotations

import asyncio
import bisect
import math

STALL_SAMPLES = 8
STALL_FACTOR = 4.0
STALL_MIN_S = 5.0


class AdaptiveLimit:
    """Concurrency for one server, lowered on overload and raised on success."""

    def __init__(self, ceiling: int):
        self.ceiling = ceiling
        self.limit = float(ceiling)
        self.active = 0
        self.wave = 0  # bumped at each cut; a reply from an older wave does not cut again
        self._changed = asyncio.Condition()

    async def acquire(self) -> int:
        """Wait for a free slot; returns the wave the request is sent in."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.active < int(self.limit))
            self.active += 1
            return self.wave

    async def release(self, wave: int, outcome: str) -> None:
        """Free a slot after an attempt whose `outcome` is `answered`, `overloaded` or
        `failed` (an error that says nothing about load)."""
        async with self._changed:
            self.active -= 1
            if outcome == "overloaded" and wave == self.wave:
                self.limit = max(1.0, self.limit / 2)
                self.wave += 1
            elif outcome == "answered":
                self.limit = min(float(self.ceiling), self.limit + 1 / self.limit)
            self._changed.notify_all()


class StallTimer:
    """Latencies of the answers so far, and the attempt timeout they suggest."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self._latencies: list[float] = []

    def record(self, latency_s: float) -> None:
        bisect.insort(self._latencies, latency_s)

    def timeout(self) -> float:
        """Seconds an attempt may take; `inf` before the server has shown its pace (the
        client's own `timeout_s` applies then)."""
        if len(self._latencies) < STALL_SAMPLES:
            return math.inf
        p95 = self._latencies[min(len(self._latencies) - 1, int(0.95 * len(self._latencies)))]
        return min(self.timeout_s, max(STALL_MIN_S, STALL_FACTOR * p95))
