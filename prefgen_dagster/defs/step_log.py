"""A step's LLM progress in its Dagster run log: the `prefgen.progress` records (see
`llm/progress.py`) of the engines it drives, at most one per engine every
`FORWARD_INTERVAL_S`, and each engine's last."""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager
from typing import Any

import dagster as dg

from prefgen_dagster.llm.progress import listening

FORWARD_INTERVAL_S = 10.0


class _ToRunLog(logging.Handler):
    def __init__(self, log: dg.DagsterLogManager) -> None:
        super().__init__(logging.INFO)
        self._log = log
        self._sent: dict[Any, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        figures = getattr(record, "prefgen_progress", None)
        if figures is None:
            return
        now = time.monotonic()
        key = figures["key"]
        finished = figures["done"] == figures["total"]
        if finished or now - self._sent.get(key, float("-inf")) >= FORWARD_INTERVAL_S:
            self._sent[key] = now
            self._log.info(record.getMessage())


def progress_in_run_log(context: dg.AssetExecutionContext) -> AbstractContextManager[None]:
    return listening(_ToRunLog(context.log))
