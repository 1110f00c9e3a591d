"""Label Studio over its REST API (the standard library's HTTP client; no SDK to install).

prefgen speaks to the annotation tool over HTTP only, so a team's own server works the same as
the one `scripts/review-server.sh` starts. The token goes in a header and nowhere else: no
message, log or error here repeats it.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TIMEOUT_S = 30.0
PAGE_SIZE = 100


class ReviewProblem(RuntimeError):
    """A review round that cannot go on until the user acts (one line, exit 2)."""


class ReviewServerError(ReviewProblem):
    """The review server could not be reached or refused a request (one line, no token)."""


class LabelStudio:
    """The three things a review round needs: a project per batch, a task per pair, and the
    annotations given so far; and, for the review sensor, a fingerprint of those."""

    def __init__(self, url: str, token: str, timeout_s: float = TIMEOUT_S):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def ensure_project(self, title: str, label_config: str) -> str:
        """The id of a project with exactly this title, created with `label_config` if none
        (titles are not unique in Label Studio, so the caller keeps the id it gets)."""
        page = 1
        while True:
            query = urllib.parse.urlencode({"title": title, "page": page, "page_size": PAGE_SIZE})
            found = self._call("GET", f"/api/projects/?{query}")
            for project in found.get("results", []):
                if project.get("title") == title:
                    return str(project["id"])
            if not found.get("next"):
                break
            page += 1
        body = {"title": title, "label_config": label_config}
        return str(self._call("POST", "/api/projects/", body)["id"])

    def create_task(self, project_id: str, data: dict[str, Any], meta: dict[str, Any]) -> str:
        body = {"project": int(project_id), "data": data, "meta": meta}
        return str(self._call("POST", "/api/tasks/", body)["id"])

    def annotations(self, project_id: str) -> list[dict[str, Any]]:
        """Every submitted (not skipped) annotation of the project: task_id, annotator (the
        user's email), result, annotated_at (its last update, ISO 8601)."""
        tasks = self._call("GET", f"/api/projects/{int(project_id)}/export?exportType=JSON")
        emails = {user["id"]: user.get("email") for user in self._call("GET", "/api/users/")}
        notes = []
        for task in tasks:
            for note in task.get("annotations", []):
                if note.get("was_cancelled"):
                    continue
                who = note.get("completed_by")
                who = who.get("id") if isinstance(who, dict) else who
                notes.append(
                    {
                        "task_id": str(task["id"]),
                        "annotator": emails.get(who) or f"user {who}",
                        "result": note.get("result", []),
                        "annotated_at": note.get("updated_at") or note["created_at"],
                    }
                )
        return notes

    def project_signature(self, project_id: str) -> str:
        """A cheap fingerprint of the project's annotations, which moves whenever a pull would
        read something new: its task and annotation counts and its newest task's last change
        (Label Studio touches a task's `updated_at` when one of its annotations is added,
        edited or skipped; the project's own counters miss an edited verdict). One request for
        one task, newest first."""
        query = urllib.parse.urlencode(
            {
                "project": int(project_id),
                "page_size": 1,
                "fields": "task_only",
                "query": json.dumps({"ordering": ["-tasks:updated_at"]}),
            }
        )
        found = self._call("GET", f"/api/tasks/?{query}")
        newest = found.get("tasks") or [{}]
        return (
            f"{found.get('total')}:{found.get('total_annotations')}:{newest[0].get('updated_at')}"
        )

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers=self._headers
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            body = " ".join(err.read(300).decode("utf-8", "replace").split())
            detail = "" if body.startswith("<") else body  # an HTML error page says nothing
            raise ReviewServerError(
                f"review server {self.url}: {method} {path.split('?')[0]} -> {err.code} {detail}"
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            reason = getattr(err, "reason", err)
            raise ReviewServerError(
                f"review server {self.url} unreachable ({reason}); start it with "
                "bash scripts/review-server.sh, or set review.url"
            ) from None


def client_from_env(url: str, token_env: str, timeout_s: float = TIMEOUT_S) -> LabelStudio:
    """The client with the token from the environment variable `token_env` (never the config)."""
    token = os.environ.get(token_env, "")
    if not token:
        raise ReviewProblem(
            f"${token_env} is not set (the review server's API token; "
            "scripts/review-server.sh writes one to its data folder)"
        )
    return LabelStudio(url, token, timeout_s)
