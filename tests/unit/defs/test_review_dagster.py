"""A review round from Dagster (`defs/review.py`): the push job, the sensor that polls the
tool, and the pull run it starts, against a scripted stand-in for Label Studio's REST API
on 127.0.0.1 (the real server: tests/e2e/test_review_round.py)."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from filelock import FileLock

from prefgen_dagster.config import load_config
from prefgen_dagster.defs import review as review_defs
from prefgen_dagster.defs.definitions import build_definitions
from prefgen_dagster.defs.partitions import batches
from prefgen_dagster.review.client import LabelStudio
from prefgen_dagster.review.round import push
from prefgen_dagster.review.tasks import CHOICES
from prefgen_dagster.storage.store import Storage
from tests.unit.conftest import config_dict
from tests.unit.rows import build_models, completion_row, instruction_row, rating_row

pytestmark = pytest.mark.usefixtures("fresh_dagster_state")

BATCH = "b.jsonl"
TOKEN = "test-token-1234567890"
TOKEN_ENV = "PREFGEN_REVIEW_TOKEN"


class FakeLabelStudio(ThreadingHTTPServer):
    """The endpoints prefgen calls, in memory; every other path (or a wrong token) fails."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.projects: dict[int, str] = {}
        self.tasks: dict[int, dict[str, Any]] = {}
        self.notes: dict[int, dict[str, Any]] = {}
        self.clock = 0  # the server's time: one second per change

    def _now(self) -> str:
        self.clock += 1
        return f"2026-12-07T10:{self.clock // 60:02d}:{self.clock % 60:02d}Z"

    def annotate(self, task_id: int, user: int, side: str) -> int:
        note_id = len(self.notes) + 1
        self.notes[note_id] = {"task": task_id, "completed_by": user, "was_cancelled": False}
        self.edit(note_id, side)
        return note_id

    def edit(self, note_id: int, side: str) -> None:
        note = self.notes[note_id]
        note["result"] = [{"from_name": "verdict", "value": {"choices": [CHOICES[side]]}}]
        note["created_at"] = note["updated_at"] = self.tasks[note["task"]]["updated_at"] = (
            self._now()
        )

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        url = urllib.parse.urlsplit(path)
        query = dict(urllib.parse.parse_qsl(url.query))
        parts = url.path.strip("/").split("/")
        if (method, url.path) == ("GET", "/api/projects/"):
            found = [{"id": i, "title": t} for i, t in self.projects.items() if t == query["title"]]
            return 200, {"results": found, "next": None}
        if (method, url.path) == ("POST", "/api/projects/"):
            self.projects[len(self.projects) + 1] = body["title"]
            return 201, {"id": len(self.projects)}
        if (method, url.path) == ("POST", "/api/tasks/"):
            task_id = len(self.tasks) + 1
            self.tasks[task_id] = {"project": body["project"], "updated_at": self._now()}
            return 201, {"id": task_id}
        if (method, url.path) == ("GET", "/api/users/"):
            return 200, [{"id": 1, "email": "alice@x"}, {"id": 2, "email": "bob@x"}]
        if method == "GET" and parts[:2] == ["api", "projects"] and parts[3:] == ["export"]:
            project = int(parts[2])
            return 200, [
                {"id": i, "annotations": [n for n in self.notes.values() if n["task"] == i]}
                for i, task in self.tasks.items()
                if task["project"] == project
            ]
        if (method, url.path) == ("GET", "/api/tasks/"):  # the signature's request
            assert json.loads(query["query"]) == {"ordering": ["-tasks:updated_at"]}
            mine = [t for t in self.tasks.values() if t["project"] == int(query["project"])]
            if not mine:
                return 404, {"detail": "No Project matches the given query."}
            mine.sort(key=lambda task: task["updated_at"], reverse=True)
            notes = [n for n in self.notes.values() if self.tasks[n["task"]] in mine]
            return 200, {"total": len(mine), "total_annotations": len(notes), "tasks": mine[:1]}
        return 404, {"detail": f"no route {method} {path}"}


class _Handler(BaseHTTPRequestHandler):
    server: FakeLabelStudio

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        if self.headers.get("Authorization") != f"Token {TOKEN}":
            status, payload = 401, {"detail": "Invalid token."}
        else:
            status, payload = self.server.answer(self.command, self.path, body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _reply

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def tool() -> Iterator[FakeLabelStudio]:
    server = FakeLabelStudio()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def config_path(tmp_path: Path, tool: FakeLabelStudio, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config naming the stand-in (models over HTTP that no test calls) and a DuckDB file
    holding a batch with four best-vs-worst pairs, of which a push sends three."""
    raw = config_dict(review={"url": tool.url, "sample": 3, "seed": 1})
    raw["models"] = {
        name: {"path": name, "backend": "openai", "base_urls": ["http://127.0.0.1:9/v1"]}
        for name in raw["models"]
    }
    raw["paths"] = {
        "duckdb_path": str(tmp_path / "prefgen.duckdb"),
        "inbox_dir": str(tmp_path / "inbox"),
        "export_dir": str(tmp_path / "export"),
    }
    path = tmp_path / "prefgen.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    storage = Storage(config.resolve(config.paths.duckdb_path))
    with storage.connect() as con:
        for i in range(4):
            iid = f"i{i}"
            rows = [("instructions", instruction_row(iid, BATCH, f"Question {i}?"))]
            for j, rating in enumerate((5, 3, 1)):
                rows.append(("completions", completion_row(f"c{i}{j}", iid, BATCH)))
                rows.append(("ratings", rating_row(f"c{i}{j}", iid, rating, BATCH)))
            for table, row in rows:
                marks = ", ".join("?" for _ in row)
                con.execute(
                    f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", [*row.values()]
                )
    build_models(storage, config, BATCH)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    return path


def storage_of(config_path: Path) -> Storage:
    config = load_config(config_path)
    return Storage(config.resolve(config.paths.duckdb_path))


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as running:
        running.add_dynamic_partitions(batches.name, [BATCH])
        yield running


def run_job(
    config_path: Path, name: str, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    job = build_definitions(str(config_path)).resolve_job_def(name)
    return job.execute_in_process(partition_key=BATCH, instance=instance, raise_on_error=False)


def tick(
    config_path: Path, instance: dg.DagsterInstance, cursor: str | None = None
) -> dg.SensorResult | dg.SkipReason:
    defs = build_definitions(str(config_path))
    sensor = defs.resolve_sensor_def("review_sensor")
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=defs.resources, definitions=defs
    ) as context:
        return sensor(context)


def skip_reason(result: dg.SensorResult | dg.SkipReason) -> str:
    if isinstance(result, dg.SkipReason):
        return result.skip_message or ""
    assert not result.run_requests
    return result.skip_reason.skip_message if result.skip_reason else ""


def test_the_push_job_creates_the_tasks_and_records_them(
    config_path: Path, tool: FakeLabelStudio, instance: dg.DagsterInstance
) -> None:
    result = run_job(config_path, "review_push_job", instance)
    assert result.success
    [output] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
    meta = {k: v.value for k, v in output.step_output_data.metadata.items()}
    assert (meta["tasks_sent"], meta["tasks_sent_before"], meta["candidate_pairs"]) == (3, 0, 4)
    assert meta["project_id"] == "1" and meta["review_url"] == tool.url
    recorded = storage_of(config_path).query("SELECT task_id FROM review_tasks ORDER BY task_id")
    assert recorded["task_id"].to_list() == ["1", "2", "3"] and len(tool.tasks) == 3
    assert not any(TOKEN in str(event) for event in result.all_events)

    again = run_job(config_path, "review_push_job", instance)
    assert again.success and len(tool.tasks) == 3  # nothing sent twice


def test_the_push_job_without_a_token_fails_naming_the_variable(
    config_path: Path, tool: FakeLabelStudio, instance: dg.DagsterInstance, monkeypatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV)
    result = run_job(config_path, "review_push_job", instance)
    assert not result.success and not tool.tasks
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith(f"${TOKEN_ENV} is not set")


def test_the_sensor_requests_a_pull_only_when_the_annotations_changed(
    config_path: Path, tool: FakeLabelStudio, instance: dg.DagsterInstance
) -> None:
    config = load_config(config_path)
    push(config, storage_of(config_path), LabelStudio(tool.url, TOKEN), BATCH)
    first = tick(config_path, instance)  # never seen: pulled once
    assert isinstance(first, dg.SensorResult)
    [request] = first.run_requests
    assert request.partition_key == BATCH
    assert {key.to_user_string() for key in request.asset_selection} == {
        "human_verdicts",
        "candidate_pairs",
        "human_agreement",
        "dpo_pairs",
    }
    unchanged = tick(config_path, instance, first.cursor)
    assert skip_reason(unchanged) == "no new or changed verdicts"

    note = tool.annotate(1, 1, "left")
    added = tick(config_path, instance, unchanged.cursor)
    assert [r.partition_key for r in added.run_requests] == [BATCH]
    assert added.run_requests[0].run_key != request.run_key
    assert skip_reason(tick(config_path, instance, added.cursor)) == "no new or changed verdicts"

    tool.edit(note, "tie")  # the same counts: a changed mind is still seen
    edited = tick(config_path, instance, added.cursor)
    assert [r.partition_key for r in edited.run_requests] == [BATCH]


def test_a_tick_without_token_server_tasks_or_a_free_file_is_skipped_with_why(
    config_path: Path,
    tool: FakeLabelStudio,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "no batch has review tasks" in skip_reason(tick(config_path, instance))
    config = load_config(config_path)
    push(config, storage_of(config_path), LabelStudio(tool.url, TOKEN), BATCH)

    monkeypatch.setattr(review_defs, "LOCK_WAIT_S", 0.1)
    with FileLock(str(config.resolve(config.paths.duckdb_path)) + ".lock"):
        assert "was not free within" in skip_reason(tick(config_path, instance))

    monkeypatch.delenv(TOKEN_ENV)
    assert skip_reason(tick(config_path, instance)).startswith(f"${TOKEN_ENV} is not set")
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    tool.shutdown()
    tool.server_close()
    assert "unreachable" in skip_reason(tick(config_path, instance))


def test_the_pull_run_stores_the_verdicts_and_reruns_the_pair_models(
    config_path: Path, tool: FakeLabelStudio, instance: dg.DagsterInstance
) -> None:
    config = load_config(config_path)
    storage = storage_of(config_path)
    push(config, storage, LabelStudio(tool.url, TOKEN), BATCH)
    shown = dict(storage.query("SELECT task_id, chosen_shown FROM review_tasks").rows())
    tool.annotate(1, 1, "right" if shown["1"] == "left" else "left")  # the rejected side
    tool.annotate(1, 2, "both_bad")

    result = run_job(config_path, "review_pull", instance)
    assert result.success
    assert {
        event.asset_key.to_user_string() for event in result.get_asset_materialization_events()
    } == {"human_verdicts", "candidate_pairs", "human_agreement", "dpo_pairs"}
    verdicts = storage.query("SELECT annotator, choice FROM human_verdicts ORDER BY annotator")
    assert verdicts.rows() == [("alice@x", "rejected"), ("bob@x", "both_bad")]
    assert not any(TOKEN in str(event) for event in result.all_events)
