"""Running an engine's event loop so that Ctrl-C and SIGTERM still stop the run."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_T = TypeVar("_T")


def run_interruptibly(work: Coroutine[Any, Any, _T]) -> _T:
    """`asyncio.run(work)`, except that Ctrl-C and SIGTERM reach the caller.

    A signal handler that raises (Dagster's, during a run) would raise inside whatever
    asyncio callback is running, and asyncio logs and swallows exceptions from callbacks:
    the interrupt would be lost. Here the signal cancels the work instead (the answers that
    arrived are already handed on), and the handler that was in place is then called
    outside the event loop, so it raises where the caller can see it."""
    if threading.current_thread() is not threading.main_thread():
        return asyncio.run(work)
    received: list[int] = []
    running: list[asyncio.Task[Any]] = []

    async def main() -> _T:
        running.append(asyncio.current_task())  # type: ignore[arg-type]
        return await work

    with asyncio.Runner() as runner:

        def stop(signum: int, frame: Any) -> None:
            received.append(signum)
            if running:
                runner.get_loop().call_soon_threadsafe(running[0].cancel)

        before = {signum: signal.signal(signum, stop) for signum in _STOP_SIGNALS}
        try:
            return runner.run(main())
        except asyncio.CancelledError:
            if not received:
                raise
        finally:
            for signum, handler in before.items():
                signal.signal(signum, handler)
    handler = before[received[0]]
    if callable(handler):
        handler(received[0], None)
    raise KeyboardInterrupt
