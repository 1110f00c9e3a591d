"""A review round: push a batch's sample to the annotation tool, pull its verdicts back.

Both talk to the tool through a `ReviewClient` (HTTP only) and to DuckDB through `Storage`;
what to send and how a verdict reads are the pure functions of `sample` and `tasks`. A push
sends only pairs that have no task yet, so running it again adds only new pairs; a pull
replaces the batch's verdicts with what the tool holds now (every annotator's latest).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import polars as pl

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.review.client import ReviewProblem
from prefgen_dagster.review.sample import chosen_shown, draw
from prefgen_dagster.review.tasks import LABEL_CONFIG, UnreadableAnnotation, task_data, verdict
from prefgen_dagster.storage.schema import TABLES
from prefgen_dagster.storage.store import Storage
from prefgen_dagster.text.conversation import prompt_messages


class ReviewClient(Protocol):
    def ensure_project(self, title: str, label_config: str) -> str: ...
    def create_task(self, project_id: str, data: dict[str, Any], meta: dict[str, Any]) -> str: ...
    def annotations(self, project_id: str) -> list[dict[str, Any]]: ...


class NothingToReview(ReviewProblem):
    """A batch without candidate pairs (not run yet, or no pairs made)."""


@dataclass(frozen=True)
class PushReport:
    batch_id: str
    project_id: str
    sent: int  # tasks created now
    already: int  # pairs that had a task from an earlier push
    candidates: int  # the batch's candidate pairs

    def __str__(self) -> str:
        return (
            f"review push {self.batch_id}: {self.sent} new tasks in project {self.project_id} "
            f"({self.already} sent before; {self.candidates} candidate pairs)"
        )


@dataclass(frozen=True)
class PullReport:
    batch_id: str
    verdicts: int
    annotators: int
    skipped: list[str]  # annotations that could not be read, with why

    def __str__(self) -> str:
        line = (
            f"review pull {self.batch_id}: {self.verdicts} verdicts from {self.annotators} "
            "annotators"
        )
        return line + (f"; {len(self.skipped)} skipped: {self.skipped[0]}" if self.skipped else "")


def project_title(batch_id: str) -> str:
    return f"prefgen {batch_id}"


_PAIRS = """
SELECT p.pair_id, p.chosen_origin, p.rejected_origin, p.margin, p.dropped_because,
       i.system_prompt, i.instruction, i.history, c.text AS chosen_text, r.text AS rejected_text
FROM candidate_pairs AS p
JOIN instructions AS i ON i.batch_id = p.batch_id AND i.instruction_id = p.instruction_id
JOIN candidates AS c ON c.batch_id = p.batch_id AND c.completion_id = p.chosen_completion_id
JOIN candidates AS r ON r.batch_id = p.batch_id AND r.completion_id = p.rejected_completion_id
WHERE p.batch_id = ?
ORDER BY p.pair_id
"""


def push(
    config: PipelineConfig, storage: Storage, client: ReviewClient, batch_id: str
) -> PushReport:
    """Send the batch's review sample: one blind task per pair not sent before."""
    review = config.review
    with storage.session():
        pairs = storage.query(_PAIRS, [batch_id]).to_dicts()
        earlier = storage.query(
            "SELECT pair_id, project_id FROM review_tasks WHERE batch_id = ?", [batch_id]
        )
    if not pairs:
        raise NothingToReview(f"batch {batch_id!r} has no candidate pairs to review (run it first)")
    picked = draw(pairs, review.sample, review.seed, review.include_dropped)
    sent = set(earlier["pair_id"].to_list())
    todo = [(pair, stratum) for pair, stratum in picked if pair["pair_id"] not in sent]
    # The batch's project is the one its first push made (titles are not unique in the tool).
    project_id = (
        earlier["project_id"][0]
        if earlier.height
        else client.ensure_project(project_title(batch_id), LABEL_CONFIG)
    )
    rows = []
    for pair, stratum in todo:
        shown = chosen_shown(review.seed, pair["pair_id"])
        data = task_data(
            prompt_messages(pair),
            pair["chosen_text"] or "",
            pair["rejected_text"] or "",
            shown,
        )
        task_id = client.create_task(project_id, data, {"pair_id": pair["pair_id"]})
        rows.append(
            {
                "batch_id": batch_id,
                "pair_id": pair["pair_id"],
                "project_id": project_id,
                "task_id": task_id,
                "chosen_shown": shown,
                "stratum": stratum,
            }
        )
        # Recorded task by task: a push cut short leaves no task unrecorded.
        with storage.connect() as con:
            con.register("incoming", TABLES["review_tasks"].frame(rows[-1:]).to_arrow())
            con.execute("INSERT INTO review_tasks BY NAME SELECT * FROM incoming")
    return PushReport(batch_id, project_id, len(rows), len(picked) - len(todo), len(pairs))


def pull(storage: Storage, client: ReviewClient, batch_id: str) -> PullReport:
    """The batch's verdicts as the tool holds them now, written over the stored ones."""
    tasks = storage.query(
        "SELECT project_id, task_id, pair_id, chosen_shown FROM review_tasks WHERE batch_id = ?",
        [batch_id],
    )
    if tasks.height == 0:
        raise NothingToReview(f"batch {batch_id!r} has no review tasks (prefgen review push it)")
    by_task = {row["task_id"]: row for row in tasks.iter_rows(named=True)}
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    skipped = []
    for project_id in sorted(set(tasks["project_id"].to_list())):
        for note in client.annotations(project_id):
            task = by_task.get(note["task_id"])
            if task is None:
                continue  # a task not made by prefgen
            try:
                choice = verdict(note["result"], task["chosen_shown"])
            except UnreadableAnnotation as err:
                skipped.append(f"task {note['task_id']} by {note['annotator']}: {err}")
                continue
            key = (task["pair_id"], note["annotator"])
            when = _utc(note["annotated_at"])
            if key not in latest or latest[key]["annotated_at"] < when:
                latest[key] = {
                    "batch_id": batch_id,
                    "pair_id": task["pair_id"],
                    "annotator": note["annotator"],
                    "choice": choice,
                    "chosen_shown": task["chosen_shown"],
                    "task_id": note["task_id"],
                    "annotated_at": when,
                }
    frame = TABLES["human_verdicts"].frame(list(latest.values()))
    storage.replace_partition("human_verdicts", batch_id, frame)
    annotators = {annotator for _, annotator in latest}
    return PullReport(batch_id, len(latest), len(annotators), skipped)


def _utc(stamp: str) -> datetime:
    """An ISO 8601 time as naive UTC (how the tables store times)."""
    when = datetime.fromisoformat(stamp)
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when


def reviewed_batches(storage: Storage) -> list[str]:
    """Batches with review tasks (what a pull of every batch reads)."""
    frame: pl.DataFrame = storage.query(
        "SELECT DISTINCT batch_id FROM review_tasks ORDER BY batch_id"
    )
    return frame["batch_id"].to_list()
