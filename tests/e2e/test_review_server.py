"""The review server as scripts/review-server.sh starts it (Label Studio in its own venv, on
127.0.0.1, with a token): a review round through its REST API only, as prefgen's `review
push` and `review pull` will drive it; and the starts it refuses."""

from __future__ import annotations

import socket
import stat
import subprocess
import urllib.error
from pathlib import Path

import pytest

from .review_server import SCRIPT, install, review_server, script_env
from .servers import free_port

pytestmark = pytest.mark.slow

# A pairwise comparison, blind: the conversation, then the two texts left and right; one verdict.
PAIRWISE_CONFIG = """<View>
  <Paragraphs name="conversation" value="$messages" layout="dialogue"
              nameKey="role" textKey="content"/>
  <View style="display: grid; grid-template-columns: 1fr 1fr; column-gap: 1em">
    <View><Header value="Left"/><Text name="left" value="$left"/></View>
    <View><Header value="Right"/><Text name="right" value="$right"/></View>
  </View>
  <Choices name="verdict" toName="left" choice="single" required="true" showInline="true">
    <Choice value="left"/><Choice value="right"/><Choice value="tie"/><Choice value="both-bad"/>
  </Choices>
</View>"""


def _task(pair_id: str, question: str, left: str, right: str) -> dict:
    messages = [{"role": "user", "content": question}]
    return {"data": {"messages": messages, "left": left, "right": right},
            "meta": {"pair_id": pair_id}}  # fmt: skip


def _verdict(choice: str) -> list[dict]:
    return [{"from_name": "verdict", "to_name": "left", "type": "choices",
             "value": {"choices": [choice]}}]  # fmt: skip


def test_a_review_round_through_the_rest_api(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "review", tmp_path / "review-server.log"
    tasks = [
        _task("pair-a", "Name a prime.", "7", "8"),
        _task("pair-b", "Capital of France?", "Paris", "Lyon"),
        _task("pair-c", "2 + 2?", "4", "5"),
    ]
    with review_server(data_dir, log) as server:
        with pytest.raises(urllib.error.HTTPError) as refused:
            server.call("GET", "/api/projects/", token="0" * 40)
        assert refused.value.code == 401
        admin = server.call("GET", "/api/current-user/whoami")
        assert admin["email"] == "prefgen@localhost"
        project = server.call(
            "POST",
            "/api/projects/",
            {"title": "batch-0001", "label_config": PAIRWISE_CONFIG, "maximum_annotations": 2},
        )
        imported = server.call("POST", f"/api/projects/{project['id']}/import", tasks)
        assert imported["task_count"] == 3
        # A second annotator: Label Studio's users API takes no password (people set theirs
        # in the UI); an annotation posted with completed_by counts as theirs.
        second = server.call(
            "POST", "/api/users/", {"email": "second@localhost", "username": "second"}
        )
        listed = server.call("GET", f"/api/tasks/?project={project['id']}")["tasks"]
        task_ids = {task["meta"]["pair_id"]: task["id"] for task in listed}
        verdicts = [("pair-a", admin, "left"), ("pair-a", second, "tie"),
                    ("pair-b", second, "both-bad")]  # fmt: skip
        for pair_id, user, choice in verdicts:
            server.call(
                "POST",
                f"/api/tasks/{task_ids[pair_id]}/annotations/",
                {"result": _verdict(choice), "completed_by": user["id"]},
            )
        # Without download_all_tasks, the export leaves out the tasks nobody annotated.
        export = f"/api/projects/{project['id']}/export?exportType=JSON&download_all_tasks=true"
        exported = server.call("GET", export)

    got = {
        task["meta"]["pair_id"]: sorted(
            (a["completed_by"], a["result"][0]["value"]["choices"][0]) for a in task["annotations"]
        )
        for task in exported
    }
    assert got == {
        "pair-a": sorted([(admin["id"], "left"), (second["id"], "tie")]),
        "pair-b": [(second["id"], "both-bad")],
        "pair-c": [],
    }
    assert {task["meta"]["pair_id"]: task["data"] for task in exported} == {
        task["meta"]["pair_id"]: task["data"] for task in tasks
    }

    credentials = data_dir / "credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    secrets = dict(line.split("=", 1) for line in credentials.read_text().splitlines())
    output = log.read_text()
    assert "Starting development server at http://127.0.0.1:" in output
    for name in ("token", "password", "secret_key"):
        assert secrets[name] not in output, f"the {name} is in the server's output"

    # A restart on the same folder keeps the token, the user and the verdicts.
    log = tmp_path / "review-server-restart.log"
    with review_server(data_dir, log) as server:
        assert server.token == secrets["token"]
        again = server.call("GET", export)
        assert [len(task["annotations"]) for task in again] == [2, 1, 0]
    assert secrets["token"] not in log.read_text()


def _refusal(data_dir: Path, port: int, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), str(data_dir), str(port)],
        capture_output=True,
        text=True,
        env=script_env(**settings),
        timeout=60,
    )


def test_a_port_in_use_is_refused_in_one_line(tmp_path: Path) -> None:
    """Label Studio alone would move to the next free port, where no client looks for it."""
    install()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _refusal(tmp_path / "review", port)
    assert done.returncode == 2
    assert done.stderr == f"review-server: port {port} on 127.0.0.1 is in use " \
        "(PREFGEN_REVIEW_PORT or the second argument)\n"  # fmt: skip


def test_a_token_other_than_the_folders_is_refused(tmp_path: Path) -> None:
    """Label Studio sets the token only when it creates the user: a new one would be ignored."""
    install()
    data_dir = tmp_path / "review"
    data_dir.mkdir()
    (data_dir / "credentials").write_text("user=prefgen@localhost\ntoken=" + "a" * 40 + "\n")
    done = _refusal(data_dir, free_port(), PREFGEN_REVIEW_TOKEN="b" * 40)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"review-server: PREFGEN_REVIEW_TOKEN differs from the token {data_dir} was created"
        f" with (see {data_dir / 'credentials'})"
    ]
    assert "b" * 40 not in done.stdout + done.stderr
