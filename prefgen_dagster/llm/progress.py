"""How far one engine is through its requests, as log records anyone can show.

Each record of the `prefgen.progress` logger carries the figures (`record.prefgen_progress`:
model, done, total, cached, failed, tokens/s, ETA) and a one-line message. `prefgen run`
draws them as live bars (`cli_progress.py`); a Dagster step forwards them to its run log
(`defs/assets.py`). With nobody listening they cost nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from prefgen_dagster.llm.types import LLMResult

LOGGER = logging.getLogger("prefgen.progress")
# The most often a record is emitted (the last one, at 100 %, always is).
INTERVAL_S = 1.0


@dataclass
class Progress:
    """One engine's share of a stage: `total` requests to ask, `cached` already answered."""

    model: str
    total: int
    cached: int = 0
    done: int = 0
    failed: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    _last: float = float("-inf")

    def add(self, result: LLMResult) -> None:
        self.done += 1
        self.failed += result.error is not None
        self.tokens += result.completion_tokens or 0
        now = time.monotonic()
        if now - self._last >= INTERVAL_S or self.done == self.total:
            self._last = now
            LOGGER.info(self.line(), extra={"prefgen_progress": self.figures()})

    def figures(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        return {
            "key": id(self),  # one engine's share of one stage
            "model": self.model,
            "done": self.done,
            "total": self.total,
            "cached": self.cached,
            "failed": self.failed,
            "tokens_per_s": self.tokens / elapsed,
            "eta_s": (self.total - self.done) / rate if rate else None,
        }

    def line(self) -> str:
        f = self.figures()
        eta = "-" if f["eta_s"] is None else f"{f['eta_s']:.0f} s"
        return (
            f"{f['model']}: {f['done']}/{f['total']} requests ({f['cached']} cached before, "
            f"{f['failed']} failed), {f['tokens_per_s']:.1f} tokens/s, ETA {eta}"
        )


@contextmanager
def listening(handler: logging.Handler) -> Iterator[None]:
    """Give the progress records to `handler` while the block runs."""
    before = LOGGER.level
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    try:
        yield
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(before)
