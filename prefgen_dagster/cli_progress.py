"""Live progress for `prefgen run`: one bar per engine's share of a stage, drawn with `rich`
from the `prefgen.progress` records (`llm/progress.py`); on a stderr that is not a terminal,
a plain line per engine every `PLAIN_INTERVAL_S` and at its end."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from prefgen_dagster.llm.progress import listening

PLAIN_INTERVAL_S = 10.0


class ProgressDisplay(logging.Handler):
    """Shows the records of the `prefgen.progress` logger."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self._console = Console(stderr=True)
        self._bars: Progress | None = None
        self._tasks: dict[Any, TaskID] = {}
        self._printed: dict[Any, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        figures = getattr(record, "prefgen_progress", None)
        if figures is None:
            return
        if not self._console.is_terminal:
            self._plain(record, figures)
            return
        if self._bars is None:
            self._bars = Progress(
                TextColumn("{task.description:<24}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeRemainingColumn(),
                console=self._console,
            )
            self._bars.start()
        detail = (
            f"{figures['cached']} cached, {figures['failed']} failed, "
            f"{figures['tokens_per_s']:.0f} tok/s"
        )
        key = figures["key"]
        if key not in self._tasks:
            self._tasks[key] = self._bars.add_task(
                figures["model"], total=figures["total"], detail=detail
            )
        self._bars.update(self._tasks[key], completed=figures["done"], detail=detail)

    def _plain(self, record: logging.LogRecord, figures: dict[str, Any]) -> None:
        now = time.monotonic()
        key = figures["key"]
        finished = figures["done"] == figures["total"]
        if finished or now - self._printed.get(key, float("-inf")) >= PLAIN_INTERVAL_S:
            self._printed[key] = now
            print(record.getMessage(), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bars is not None:
            self._bars.stop()
        super().close()


@contextmanager
def shown_progress() -> Iterator[None]:
    """Show the progress records while the block runs."""
    display = ProgressDisplay()
    try:
        with listening(display):
            yield
    finally:
        display.close()
