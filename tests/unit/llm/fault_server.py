"""A small OpenAI-compatible chat server on 127.0.0.1 that misbehaves on request.

The last message's content picks the fault: content starting with `<fault>x<n>` (e.g.
`503x2 first`) gets `<fault>` on its first n requests and a normal `chat.completion` after
that; any other content is answered (after `answer_delay_s`) with `reply(content)`, by
default `echo: <content>`. A server can also be `down`
(every request gets one fault), made `healthy` (no faults at all), or take at most
`max_in_flight` requests at a time (more get 503 + Retry-After, as an overloaded server
does); it records every request it saw and when each answer was sent.

It answers with HTTP/1.0 framing (one request per connection), so a client never reuses a
connection the server has already closed: the attempts it counts are exactly the client's.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SCRIPT = re.compile(r"^(?P<fault>\w+)x(?P<times>\d+)\b")
STATUS_FAULTS = {"400": 400, "429": 429, "500": 500, "503": 503}
FAULTS = (*STATUS_FAULTS, "hang", "drop", "badjson", "nochoices", "trickle")


@dataclass(frozen=True)
class Hit:
    content: str
    fault: str | None
    at: float  # time.monotonic() when the request arrived
    model: str = ""


class FaultServer:
    """Serves in a background thread from `start()` until `close()` (use it as a context)."""

    def __init__(
        self,
        retry_after: str = "0.2",
        hang_s: float = 3.0,
        down: str | None = None,
        answer_delay_s: float = 0.0,
        max_in_flight: int | None = None,
        reply: Callable[[str], str] | None = None,
    ):
        self.retry_after = retry_after
        self.hang_s = hang_s
        self.down = down
        self.answer_delay_s = answer_delay_s
        self.max_in_flight = max_in_flight
        self.healthy = False
        self.hits: list[Hit] = []
        # (model, content, time.monotonic()) of each normal answer sent
        self.answered: list[tuple[str, str, float]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()  # wakes handlers that hang or trickle
        self.reply = reply or (lambda content: f"echo: {content}")
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.faults = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FaultServer:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, wake every sleeping handler and wait for all threads to end."""
        self._stop.set()
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()  # joins the handler threads (block_on_close)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def attempts(self, content: str) -> int:
        """How many requests with this last-message content reached the server."""
        with self._lock:
            return sum(1 for hit in self.hits if hit.content == content)

    def times(self, content: str) -> list[float]:
        with self._lock:
            return [hit.at for hit in self.hits if hit.content == content]

    def _next_fault(self, content: str, model: str) -> str | None:
        with self._lock:
            fault = None
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            if self.down:
                fault = self.down
            elif self.max_in_flight is not None and self.in_flight > self.max_in_flight:
                fault = "overloaded"
            elif (
                not self.healthy
                and (match := SCRIPT.match(content))
                and self._seen[content] < int(match["times"])
            ):
                fault = match["fault"]
            self._seen[content] += 1
            self.hits.append(Hit(content, fault, time.monotonic(), model))
            return fault

    def _done(self, content: str, model: str, answered: bool) -> None:
        with self._lock:
            self.in_flight -= 1
            if answered:
                self.answered.append((model, content, time.monotonic()))

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server is closing; True if the full time passed."""
        return not self._stop.wait(seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so that server_close() waits for the handlers
    faults: FaultServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read `FaultServer.hits` instead."""

    def do_POST(self) -> None:
        if self.path != "/v1/chat/completions":
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        except ValueError:  # the client died while sending
            return
        content = body["messages"][-1]["content"]
        faults = self.server.faults
        fault = faults._next_fault(content, body["model"])
        answered = False
        try:
            # The client may have given up first (a timeout): then there is nobody to answer.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                answered = self._answer(fault, body, content, faults)
        finally:
            faults._done(content, body["model"], answered)

    def _answer(self, fault: str | None, body: dict, content: str, faults: FaultServer) -> bool:
        """Reply as scripted; True when a normal answer was sent."""
        if fault == "overloaded":
            headers = {"Retry-After": faults.retry_after}
            self._send_json(503, {"error": {"message": "overloaded"}}, headers)
        elif fault in STATUS_FAULTS:
            headers = {"Retry-After": faults.retry_after} if fault == "429" else {}
            self._send_json(STATUS_FAULTS[fault], {"error": {"message": f"fault {fault}"}}, headers)
        elif fault == "hang":
            if faults._sleep(faults.hang_s):
                self._send_json(200, _completion(body, faults.reply(content)))
                return True
        elif fault == "drop":
            payload = json.dumps(_completion(body, faults.reply(content))).encode()
            self._send_head(200, len(payload))
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        elif fault == "badjson":
            self._send_raw(200, b'{"not": "a completion"')
        elif fault == "nochoices":
            self._send_json(200, {"not": "a completion"})
        elif fault == "trickle":
            self._send_head(200, 10_000)
            while faults._sleep(0.05):
                self.wfile.write(b" ")
                self.wfile.flush()
        elif faults._sleep(faults.answer_delay_s):
            self._send_json(200, _completion(body, faults.reply(content)))
            return True
        return False

    def _send_head(self, status: int, length: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def _send_raw(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self._send_head(status, len(payload), headers)
        self.wfile.write(payload)

    def _send_json(self, status: int, data: dict, headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(data).encode(), headers)


def _completion(body: dict, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fault-server",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }
