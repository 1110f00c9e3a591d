"""A model's OpenAI-compatible servers as one fleet: where the next attempt goes, and which
servers are out for a cool-down.

* Choice: an attempt goes to the server, of those in service with a free slot (its
  `pacing.AdaptiveLimit`), with the fewest requests in flight for its current limit; ties go
  round-robin. A slow server frees its slots later and a server that answered 429/503 has a
  lower limit, so both get less work. A retry takes any other server with a free slot before
  the one its last attempt went to.
* Cool-down (a circuit breaker): `cooldown_after_failures` attempts in a row on one server
  that end in a fault of the server (connection errors, timeouts, stalls, malformed bodies,
  5xx other than 503) take it out for `cooldown_s`; after that one probe attempt is let
  through. An answer to the probe puts the server back; a fault takes it out again for twice
  as long, up to `max_cooldown_s`. Overload replies do not count (the server is busy, not
  broken, and its limit already fell), nor do outcomes of attempts sent before it was taken
  out (the same fault, already counted). A lone server is never taken out, as in nginx:
  there is nowhere else to send its requests, and the retry rules already bound them.
* Waiting: an attempt that finds no server waits in line, retries ahead of first attempts,
  within the request's deadline once it has made an attempt. Before that, waiting for a free
  slot is not bounded (a whole stage queues behind the limits), but waiting while every
  server is out is: `deadline_s` from when it found them all out. So a fleet that is down
  fails its requests within `deadline_s`, and at once when no server is back for a probe
  before then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from prefgen_dagster.config.base import ModelSpec
from prefgen_dagster.llm.engines.pacing import AdaptiveLimit, StallTimer

log = logging.getLogger(__name__)

C = TypeVar("C")

# How an attempt ended: `broken` is a fault of the server (it counts toward a cool-down);
# `failed` is an error that says nothing about the server (a 400, the request's deadline).
Outcome = Literal["answered", "overloaded", "broken", "failed"]

# asyncio may run a timer up to its clock's resolution early; a cool-down's end is woken
# this much later so that the server is back when the waiters look.
TIMER_SLACK_S = 0.001


class DeadlineExceeded(Exception):
    """The request's attempts and waits used up its time budget."""


class ServersCoolingDown(Exception):
    """Every server of the model is out, and none is back before the request's deadline."""


class CoolDown:
    """Whether one server is in service. Pure: the caller passes the time in."""

    def __init__(self, after_failures: int | None, cooldown_s: float, max_cooldown_s: float):
        self.after_failures = after_failures  # None: never taken out
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self.failures = 0  # attempts in a row that ended `broken`
        self.next_out_s = cooldown_s  # how long the next cool-down lasts
        self.until: float | None = None  # None: in service; else out until then, then probed
        self.probing = False

    def usable(self, now: float) -> bool:
        """May an attempt go to the server now (in service, or due for its probe)?"""
        return self.until is None or (now >= self.until and not self.probing)

    def sent(self) -> bool:
        """An attempt goes to the server (`usable` said so); True if it is the probe."""
        self.probing = self.until is not None
        return self.probing

    def record(self, outcome: Outcome, probe: bool, now: float) -> Literal["out", "back"] | None:
        """Count an attempt's outcome; says whether the server was taken out or is back."""
        if probe:
            self.probing = False
        elif self.until is not None:
            return None  # sent before the server was taken out
        if outcome == "answered":
            self.failures = 0
            self.next_out_s = self.cooldown_s
            self.until = None
            return "back" if probe else None
        if outcome != "broken" or self.after_failures is None:
            return None  # a probe that says nothing (overload, a 400): the next one may go
        self.failures += 1
        if not probe and self.failures < self.after_failures:
            return None
        self.failures = 0
        self.until = now + self.next_out_s
        self.next_out_s = min(self.max_cooldown_s, 2 * self.next_out_s)
        return "out"


@dataclass(eq=False)
class Server(Generic[C]):
    """One base URL: its client, how many requests it takes now, how fast it answers, and
    whether it is in service."""

    url: str
    client: C
    limit: AdaptiveLimit
    stall: StallTimer
    health: CoolDown

    def room(self, now: float) -> int:
        """How many more attempts may go to the server now."""
        if not self.health.usable(now):
            return 0
        free = max(0, int(self.limit.limit) - self.limit.active)
        return min(free, 1) if self.health.until is not None else free

    def load(self) -> float:
        return self.limit.active / self.limit.limit


@dataclass(frozen=True)
class Ticket(Generic[C]):
    """One attempt's place on a server, handed back with its outcome."""

    server: Server[C]
    wave: int  # see `AdaptiveLimit.acquire`
    probe: bool


def choose(
    servers: Sequence[Server[C]], now: float, avoid: Server[C] | None, start: int
) -> int | None:
    """The index of the server for the next attempt, or None when none has room: another
    server than `avoid` first, then the fewest in flight for its limit, then round-robin
    from index `start`."""
    order = [(start + k) % len(servers) for k in range(len(servers))]
    free = [i for i in order if servers[i].room(now) > 0]
    if not free:
        return None
    return min(free, key=lambda i: (servers[i] is avoid, servers[i].load()))


class Fleet(Generic[C]):
    """The servers of one model, shared by the requests of a stage."""

    def __init__(self, servers: list[Server[C]], deadline_s: float):
        self.servers = servers
        self.deadline_s = deadline_s  # the longest a first attempt waits while all are out
        self._next = 0  # where round-robin starts among equally loaded servers
        # Waiting attempts: retries (their deadline runs), then first attempts.
        self._waiting: tuple[deque[asyncio.Future[None]], ...] = (deque(), deque())

    @classmethod
    def build(cls, spec: ModelSpec, client: Callable[[str], C]) -> Fleet[C]:
        """A server per base URL, each with `client(url)`."""
        after = spec.cooldown_after_failures if len(spec.base_urls) > 1 else None
        return cls(
            [
                Server(
                    url,
                    client(url),
                    AdaptiveLimit(spec.max_concurrency),
                    StallTimer(spec.timeout_s),
                    CoolDown(after, spec.cooldown_s, spec.max_cooldown_s),
                )
                for url in spec.base_urls
            ],
            spec.deadline_s,
        )

    async def acquire(self, avoid: Server[C] | None, deadline: float | None) -> Ticket[C]:
        """A place for one attempt, waiting for it if no server has room. `deadline` (loop
        time) is the request's, None before its first attempt. Raises `ServersCoolingDown`
        or `DeadlineExceeded` when the wait would pass it."""
        loop = asyncio.get_running_loop()
        out_since: float | None = None
        while True:
            now = loop.time()
            index = choose(self.servers, now, avoid, self._next)
            out = index is None and not any(s.health.usable(now) for s in self.servers)
            if not out:
                out_since = None
            elif out_since is None:
                out_since = now
            at = deadline
            if at is None and out_since is not None:
                at = out_since + self.deadline_s
            back = self._first_back() if out else None
            if at is not None and (now >= at or back is not None and back >= at):
                self._wake()  # pass on a wake-up this attempt may have been given
                if out:
                    raise ServersCoolingDown(self._why_out(now))
                raise DeadlineExceeded("no server had room before the request's deadline")
            if index is not None:
                server = self.servers[index]
                self._next = index + 1
                wave = await server.limit.acquire()  # it has room: this does not wait
                return Ticket(server, wave, server.health.sent())
            await self._wait(at if back is None else back + TIMER_SLACK_S)

    async def release(self, ticket: Ticket[C], outcome: Outcome, error: Exception | None) -> None:
        """Hand an attempt's place back with how it ended (`error`: why, for the log)."""
        server = ticket.server
        await server.limit.release(ticket.wave, "failed" if outcome == "broken" else outcome)
        loop = asyncio.get_running_loop()
        now = loop.time()
        change = server.health.record(outcome, ticket.probe, now)
        if change == "out" and server.health.until is not None:
            why = "its probe failed" if ticket.probe else "failed attempts in a row"
            log.warning(
                "%s taken out for %.1f s: %s (last: %s: %s)",
                server.url,
                server.health.until - now,
                why,
                type(error).__name__,
                error,
            )
            loop.call_at(server.health.until + TIMER_SLACK_S, self._wake)
        elif change == "back":
            log.info("%s is back in service: its probe was answered", server.url)
        # A server taken out may leave none in service: every waiting attempt looks again,
        # and those that no server can take before their deadline fail now.
        self._wake(everyone=change == "out")

    def _first_back(self) -> float | None:
        """With every server out: when the first is due for a probe; None while a probe is
        under way (its answer may bring its server back at any time)."""
        if any(server.health.probing for server in self.servers):
            return None
        return min(server.health.until or 0.0 for server in self.servers)

    def _why_out(self, now: float) -> str:
        ends = [s.health.until for s in self.servers if s.health.until and s.health.until > now]
        first = f" (the first is due in {min(ends) - now:.1f} s)" if ends else ""
        return (
            f"all {len(self.servers)} servers are taken out after repeated failures, and none "
            f"is back before the request's deadline{first}"
        )

    async def _wait(self, until: float | None) -> None:
        """Until another attempt ends, a cool-down ends, or `until` (loop time)."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiting[0 if until is not None else 1].append(waiter)
        timeout = None if until is None else max(0.0, until - loop.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, timeout)

    def _wake(self, everyone: bool = False) -> None:
        """Wake as many waiting attempts as the servers have room for now, or all of them."""
        now = asyncio.get_running_loop().time()
        room = math.inf if everyone else sum(server.room(now) for server in self.servers)
        for queue in self._waiting:
            while room > 0 and queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    room -= 1
