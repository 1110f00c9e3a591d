"""`prefgen run` shows each engine's progress while its stage runs: live bars on a terminal
(here a pseudo-terminal), plain lines when stderr is a pipe. The models are served over HTTP
by a scripted server that takes 0.3 s per answer."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.unit.http_pipeline import reply, write_http_config
from tests.unit.llm.fault_server import FaultServer

INSTRUCTIONS = [f"Question number {i}?" for i in range(24)]


def command(config: Path) -> list[str]:
    batch = config.parent / "data" / "inbox" / "batch.jsonl"
    return [sys.executable, "-m", "prefgen_dagster.cli", "run", str(batch), "--config", str(config)]


def test_bars_are_drawn_on_a_terminal_while_the_stage_runs(tmp_path: Path) -> None:
    with FaultServer(reply=reply, answer_delay_s=0.3) as server:
        config = write_http_config(tmp_path, server, INSTRUCTIONS)
        leader, follower = pty.openpty()
        process = subprocess.Popen(
            command(config), stdin=follower, stdout=follower, stderr=follower, close_fds=True
        )
        os.close(follower)
        output, answered_when_first_drawn = b"", None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process is done
                break
            output += chunk
            if answered_when_first_drawn is None and b"srv-a" in output:
                answered_when_first_drawn = len(server.answered)
        process.wait(timeout=60)
        os.close(leader)
    assert process.returncode == 0, output.decode(errors="replace")[-2000:]
    text = output.decode(errors="replace")
    # Drawn while the pool stage was still being answered, not only at the end.
    assert answered_when_first_drawn is not None
    assert answered_when_first_drawn < 2 * len(INSTRUCTIONS)
    assert "24/24" in text and "tok/s" in text


def test_plain_lines_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    with FaultServer(reply=reply) as server:
        config = write_http_config(tmp_path, server, INSTRUCTIONS)
        done = subprocess.run(command(config), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    for model in ("srv-a", "srv-b"):
        assert any(line.startswith(f"{model}: 24/24 requests (0 cached before") for line in lines)
