"""A review round end to end: a real batch (tiny models on vLLM), the real review server
(Label Studio from scripts/review-server.sh), `prefgen review push`, verdicts posted through
the server's own API as two annotators would, `prefgen review pull`, and what the verdicts
do: the agreement figures, a flipped and a dropped pair, the export, the gate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from prefgen_dagster.review.tasks import CHOICES
from prefgen_dagster.storage.store import Storage
from tests.conftest import CLEAN_ENV
from tests.e2e.conftest import exported_pairs, write_config
from tests.e2e.review_server import ReviewServer, review_server

pytestmark = pytest.mark.slow

QUESTIONS = [
    "Name three prime numbers.",
    "What is the capital of France?",
    "Give one tip for writing clear emails.",
    "Explain what a hash function is in one sentence.",
    "Suggest a name for a grey cat.",
    "What does DPO stand for in machine learning?",
]


def prefgen(*args: str, token: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in CLEAN_ENV.items() if key != "DAGSTER_HOME"}
    if token:
        env["PREFGEN_REVIEW_TOKEN"] = token
    done = subprocess.run(
        [sys.executable, "-m", "prefgen_dagster.cli", *args],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    if check:
        assert done.returncode in (0, 3), done.stdout[-3000:] + done.stderr[-3000:]
    return done


def annotate(server: ReviewServer, task_id: str, user_id: int, side: str) -> None:
    result = [{"from_name": "verdict", "to_name": "prompt", "type": "choices",
               "value": {"choices": [CHOICES[side]]}}]  # fmt: skip
    server.call("POST", f"/api/tasks/{task_id}/annotations/",
                {"result": result, "completed_by": user_id})  # fmt: skip


def test_human_verdicts_measure_gate_and_correct_a_batch(tmp_path: Path, tiny_models: Path) -> None:
    with review_server(tmp_path / "review", tmp_path / "review-server.log") as server:
        config = write_config(
            tmp_path,
            tiny_models,
            pairing={"strategy": "all_pairs", "min_margin": 1.0},
            review={"url": server.base_url, "sample": 8, "seed": 2, "min_verdicts": 6},
        )
        batch = tmp_path / "six.jsonl"
        batch.write_text("".join(f'{{"instruction": "{q}"}}\n' for q in QUESTIONS))
        run = prefgen("run", str(batch), "--config", str(config))
        assert run.returncode == 0, run.stdout[-3000:]
        storage = Storage(tmp_path / "data" / "prefgen.duckdb")
        calls_before = storage.query("SELECT count(*) AS n FROM llm_calls")["n"][0]

        # Without the token: one line, exit 2.
        refused = prefgen("review", "push", "six.jsonl", "--config", str(config), check=False)
        assert refused.returncode == 2 and "PREFGEN_REVIEW_TOKEN is not set" in refused.stderr

        pushed = prefgen("review", "push", "six.jsonl", "--config", str(config), token=server.token)
        assert "8 new tasks" in pushed.stdout
        again = prefgen("review", "push", "six.jsonl", "--config", str(config), token=server.token)
        assert "0 new tasks" in again.stdout and "8 sent before" in again.stdout
        tasks = storage.query(
            "SELECT t.task_id, t.pair_id, t.chosen_shown, c.can_be_chosen AS rejected_choosable "
            "FROM review_tasks AS t JOIN candidate_pairs AS p USING (batch_id, pair_id) "
            "JOIN candidates AS c ON c.batch_id = p.batch_id "
            "AND c.completion_id = p.rejected_completion_id ORDER BY t.task_id"
        ).to_dicts()
        assert len(tasks) == 8
        listed = server.call("GET", f"/api/tasks/?project={server_project(server)}")["tasks"]
        assert {str(task["id"]) for task in listed} == {t["task_id"] for t in tasks}
        assert all(set(task["data"]) == {"prompt", "left", "right"} for task in listed)  # blind

        admin = server.call("GET", "/api/current-user/whoami")["id"]
        second = server.call("POST", "/api/users/", {"email": "b@localhost", "username": "b"})["id"]
        flip = next(t for t in tasks if t["rejected_choosable"])
        bad, *rest = [t for t in tasks if t is not flip]
        other = lambda t: "right" if t["chosen_shown"] == "left" else "left"  # noqa: E731
        for user in (admin, second):
            annotate(server, flip["task_id"], user, other(flip))  # both prefer the rejected
            for task in rest:
                annotate(server, task["task_id"], user, task["chosen_shown"])  # agree
        annotate(server, bad["task_id"], admin, "both_bad")

        pulled = prefgen("review", "pull", "--config", str(config), token=server.token)
        assert "15 verdicts from 2 annotators" in pulled.stdout
        assert storage.query("SELECT count(*) AS n FROM llm_calls")["n"][0] == calls_before
        pairs = {
            row["pair_id"]: row for row in storage.query("SELECT * FROM candidate_pairs").to_dicts()
        }
        assert pairs[flip["pair_id"]]["human_review"].startswith("flipped: 2 of 2 verdicts")
        assert pairs[bad["pair_id"]]["dropped_because"].startswith("human: both_bad")
        exported = {row["pair_id"]: row for row in exported_pairs(tmp_path)}
        assert exported[flip["pair_id"]]["human_review"].startswith("flipped")
        assert bad["pair_id"] not in exported
        agreement = storage.query("SELECT * FROM human_agreement").to_dicts()
        assert agreement, "no agreement figures"

        # People now disagree with every pair: the gate holds the batch back.
        for task in rest:
            for user in (admin, second):
                annotate(server, task["task_id"], user, other(task))
        held = prefgen("review", "pull", "--config", str(config), token=server.token)
        assert "judge_human_agreement" in held.stdout and "FAILED" in held.stdout
        assert storage.query("SELECT count(*) AS n FROM llm_calls")["n"][0] == calls_before

    # The token is in no log, no metadata, no card, no table.
    outputs = [run, refused, pushed, again, pulled, held]
    assert not any(server.token in p.stdout + p.stderr for p in outputs)
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert server.token.encode() not in path.read_bytes(), path


def server_project(server: ReviewServer) -> int:
    [project] = server.call("GET", "/api/projects/")["results"]
    return project["id"]
