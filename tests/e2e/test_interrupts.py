"""`prefgen run` killed (SIGKILL) or interrupted (SIGINT, SIGTERM) in the middle of a stage,
then run again, with the default engine settings: the prompts asked again are at most the
requests that were in flight at the kill, counted by the server.

The models are served over HTTP by a fault-injecting server on 127.0.0.1 that takes 0.3 s
per answer (`tests/unit/http_pipeline.py`), so the first stage is well under way (and far
from done) when the signal comes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.unit.http_pipeline import reply, write_http_config
from tests.unit.llm.fault_server import FaultServer

pytestmark = pytest.mark.slow

INSTRUCTIONS = [f"Question number {i}?" for i in range(60)]  # 120 pool requests, then rewrites
KILL_AFTER_ANSWERS = 40
INBOX_FILE = "data/inbox/batch.jsonl"
# An answer the server sent this shortly before the signal may not have reached the client
# yet: from the client's side it was still in flight.
IN_TRANSIT_S = 0.05


def prefgen_run(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "prefgen_dagster.cli", "run", str(config.parent / INBOX_FILE)]
        + ["--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_a_rerun_after_a_kill_asks_only_what_was_in_flight(
    tmp_path: Path, signum: signal.Signals
) -> None:
    with FaultServer(reply=reply, answer_delay_s=0.3) as server:
        config = write_http_config(tmp_path, server, INSTRUCTIONS)
        first = prefgen_run(config)
        deadline = time.monotonic() + 120
        while len(server.answered) < KILL_AFTER_ANSWERS:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        killed_at = time.monotonic()
        os.kill(first.pid, signum)
        _, stderr = first.communicate(timeout=60)
        asked = {(hit.model, hit.content) for hit in server.hits if hit.at <= killed_at}
        answered = {(m, c) for m, c, at in server.answered if at < killed_at - IN_TRANSIT_S}
        in_flight = asked - answered

        seen = len(server.hits)
        server.answer_delay_s = 0.0  # the delay only had to keep the first run mid-stage
        second = prefgen_run(config)
        out, err = second.communicate(timeout=300)
        assert second.returncode == 0, out + err
        asked_again = {(hit.model, hit.content) for hit in server.hits[seen:]} & asked

    assert len(asked_again) <= len(in_flight), (asked_again - in_flight, len(in_flight))
    assert asked_again <= in_flight
    if signum != signal.SIGKILL:
        assert first.returncode == 130
        # Progress lines, then the one line about the interrupt; no traceback.
        assert stderr.strip().splitlines()[-1] == (
            "prefgen: interrupted; every answer that arrived is saved in the DuckDB file. Run "
            "the same command again to go on: answered prompts are not asked again."
        )
        assert "Traceback" not in stderr
