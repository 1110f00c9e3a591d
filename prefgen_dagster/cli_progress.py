"""What `prefgen run` shows while it works: one bar per engine's share of a stage, drawn with
`rich` from the `prefgen.progress` records (`llm/progress.py`; on a stderr that is not a
terminal, a plain line per engine every `PLAIN_INTERVAL_S` and at its end), and not the
engines' own logs, which go to a file (`engine_logs_to`) unless `--verbose`."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

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
# The loggers of the engines prefgen drives in-process.
ENGINE_LOGGERS = ("vllm",)


class ProgressDisplay(logging.Handler):
    """Shows the records of the `prefgen.progress` logger."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        # The stderr of the moment the display is made: while a step runs, Dagster's
        # compute-log capture points sys.stderr (and fd 2) at its log files, and the bars
        # belong on the terminal, not in those files.
        try:
            self._stream: TextIO = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
        except (AttributeError, OSError, ValueError):  # no descriptor (a test's capture)
            self._stream = sys.stderr
        self._console = Console(file=self._stream)
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
            print(record.getMessage(), file=self._stream, flush=True)

    def close(self) -> None:
        if self._bars is not None:
            self._bars.stop()
        if self._stream is not sys.stderr:
            self._stream.close()
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


@contextmanager
def engine_logs_to(path: Path) -> Iterator[None]:
    """Send the engines' logs to `path` (appended) instead of the terminal."""
    # Else vLLM gives its logger a handler of its own, on stdout, when it is imported.
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger(name) for name in ENGINE_LOGGERS]
    before = [(logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, (level, propagate) in zip(loggers, before, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
        handler.close()
