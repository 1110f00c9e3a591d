"""Answers kept as they arrive: a journal line at once, the DuckDB cache a few at a time.

An engine hands each result to `AnswerSaver.add` as soon as it has it. The result is first
appended to this process's journal, `<duckdb file>.journal/<pid>.jsonl` (one `write` call:
it survives the process being killed), then written to `llm_calls` / `failed_calls` with
the others that arrived since the last write, at most every `save_interval_s` (opening the
DuckDB file costs about 30 ms, too much per answer), and at the end or on an interrupt.
Those writes run on a thread of their own, one after another, so the engine (which calls
`add` between its steps) does not wait for DuckDB.

The next run first moves the journals of processes that are gone into the cache
(`recover_journals`). So a SIGKILL loses only the requests in flight; Ctrl-C and SIGTERM
write everything before they stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prefgen_dagster.llm.types import LLMRequest, LLMResult
from prefgen_dagster.storage.store import Storage


def journal_dir(storage: Storage) -> Path:
    return Path(f"{storage.path}.journal")


class AnswerSaver:
    """Journals one engine's results and writes them to the cache; use it as a context."""

    def __init__(self, storage: Storage, run_id: str | None, interval_s: float):
        self._storage = storage
        self._run_id = run_id
        self._interval_s = interval_s
        # The first write waits an interval too: a stage shorter than one (a grown batch's
        # few new requests) then writes once, at the end. Each answer is journaled at once.
        self._last_write = time.monotonic()
        self._answered: list[dict[str, Any]] = []
        self._failed: list[dict[str, Any]] = []
        self._path = journal_dir(storage) / f"{os.getpid()}.jsonl"
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._journal = self._path.open("a", encoding="utf-8")
        # One writer thread: the writes keep their order, and DuckDB sees one writer.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefgen-saver")
        # Writes handed to the thread whose outcome is not yet checked.
        self._writes: list[Future[None]] = []
        # Every result seen, by call id: the rows the stage reads back.
        self.rows: dict[str, dict[str, Any]] = {}

    def __enter__(self) -> AnswerSaver:
        return self

    def __exit__(self, *exc: object) -> None:
        """Write what is buffered, then drop the journal (the cache has all of it now). If
        a write failed, the journal stays for the next run to recover."""
        try:
            self.flush()
        finally:
            self._writer.shutdown()
            self._journal.close()
        self._path.unlink(missing_ok=True)

    def add(self, request: LLMRequest, result: LLMResult) -> bool:
        """Take one result (a second one for the same call is ignored: False); write if
        due."""
        if request.call_id in self.rows:
            return False
        if result.error is None:
            row = cache_row(request, result, self._run_id)
            self._answered.append(row)
        else:
            row = failure_row(request, result)
            self._failed.append(row)
        self.rows[request.call_id] = row
        self._journal.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._journal.flush()
        if time.monotonic() - self._last_write >= self._interval_s:
            self._write_buffered()
        return True

    def flush(self) -> None:
        """Write what is buffered to DuckDB and wait until every write is done."""
        self._write_buffered()
        self._check_writes(wait=True)

    def _write_buffered(self) -> None:
        """Hand the buffered rows to the writer thread (after the writes before them)."""
        self._check_writes(wait=False)
        answered, failed = self._answered, self._failed
        self._answered, self._failed = [], []
        self._last_write = time.monotonic()
        if answered or failed:
            self._writes.append(self._writer.submit(self._storage.save_calls, answered, failed))

    def _check_writes(self, wait: bool) -> None:
        """Raise what a finished write raised (every one, not only the last: a failed write
        followed by a good one must still stop the stage and keep the journal)."""
        for write in list(self._writes):
            if wait or write.done():
                write.result()
                self._writes.remove(write)


def recover_journals(storage: Storage) -> int:
    """Move the journals of processes that are no longer running into the cache; returns
    how many answers they held. A line cut short by the kill is skipped."""
    recovered = 0
    folder = journal_dir(storage)
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        if path.stem.isdigit() and _running(int(path.stem)):
            continue
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                rows.append(json.loads(line))
        # Only the answers: a failure is learnt again by asking (recording it twice would
        # count one run's failure as two).
        answered = [row for row in rows if "error" not in row]
        storage.save_calls(answered, [])
        path.unlink()
        recovered += len(answered)
    return recovered


def _running(pid: int) -> bool:
    """Whether another process with this id is running (this process has no journal open
    while it recovers: one under its own id was left by an earlier process)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def cache_row(request: LLMRequest, result: LLMResult, run_id: str | None) -> dict[str, Any]:
    """An `llm_calls` row."""
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


def failure_row(request: LLMRequest, result: LLMResult) -> dict[str, Any]:
    """A `failed_calls` row (its `runs` is counted when it is written)."""
    return {
        "call_id": request.call_id,
        "model": request.model,
        "error": result.error,
        "attempts": result.extra.get("attempts"),
    }
