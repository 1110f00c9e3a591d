"""A review round against a real DuckDB file and an in-memory annotation tool: what a push
sends (blind, once per pair) and what a pull stores (every annotator's latest verdict).
The real tool over HTTP: tests/e2e/test_review_round.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.review.round import NothingToReview, pull, push
from prefgen_dagster.review.tasks import CHOICES
from prefgen_dagster.storage.store import Storage
from tests.unit.rows import build_models, completion_row, instruction_row, rating_row

BATCH = "b.jsonl"


class Tool:
    """The annotation tool's side of the contract, in memory."""

    def __init__(self) -> None:
        self.projects: dict[str, str] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.notes: list[dict[str, Any]] = []

    def ensure_project(self, title: str, label_config: str) -> str:
        return self.projects.setdefault(title, f"project-{len(self.projects) + 1}")

    def create_task(self, project_id: str, data: dict[str, Any], meta: dict[str, Any]) -> str:
        task_id = str(len(self.tasks) + 1)
        self.tasks[task_id] = {"project": project_id, "data": data, "meta": meta}
        return task_id

    def annotations(self, project_id: str) -> list[dict[str, Any]]:
        return [n for n in self.notes if self.tasks[n["task_id"]]["project"] == project_id]

    def annotate(self, task_id: str, annotator: str, side: str, at: str) -> None:
        self.notes.append(
            {
                "task_id": task_id,
                "annotator": annotator,
                "annotated_at": at,
                "result": [{"from_name": "verdict", "value": {"choices": [CHOICES[side]]}}],
            }
        )


@pytest.fixture
def batch(
    make_config: Callable[..., PipelineConfig],
    storage: Storage,
    insert_rows: Callable[[str, list[dict[str, Any]]], None],
) -> PipelineConfig:
    """Four instructions with three rated answers each: four best-vs-worst pairs."""
    config = make_config(review={"sample": 3, "seed": 1})
    for i in range(4):
        iid = f"i{i}"
        insert_rows("instructions", [instruction_row(iid, BATCH, f"Question {i}?")])
        for j, rating in enumerate((5, 3, 1)):
            cid = f"c{i}{j}"
            insert_rows("completions", [completion_row(cid, iid, BATCH, text=f"answer {cid}")])
            insert_rows("ratings", [rating_row(cid, iid, rating, BATCH)])
    build_models(storage, config, BATCH)
    return config


def test_a_push_sends_a_blind_sample_once(batch: PipelineConfig, storage: Storage) -> None:
    tool = Tool()
    report = push(batch, storage, tool, BATCH)
    assert (report.sent, report.already, report.candidates) == (3, 0, 4)
    tasks = storage.query("SELECT * FROM review_tasks ORDER BY task_id")
    assert tasks.height == 3 and set(tasks["project_id"]) == {"project-1"}
    for row in tasks.iter_rows(named=True):
        data = tool.tasks[row["task_id"]]["data"]
        chosen, rejected = (
            data[row["chosen_shown"]],
            data["right" if row["chosen_shown"] == "left" else "left"],
        )
        assert chosen.endswith("0") and rejected.endswith("2")  # best vs worst, blind
        assert "[user]\nQuestion" in data["prompt"]
        assert not {"rating", "margin", "model", "judge"} & set(data)

    again = push(batch, storage, tool, BATCH)
    assert (again.sent, again.already) == (0, 3)
    assert len(tool.tasks) == 3

    bigger = batch.model_copy(update={"review": batch.review.model_copy(update={"sample": 10})})
    grown = push(bigger, storage, tool, BATCH)
    assert (grown.sent, grown.already) == (1, 3)


def test_a_pull_stores_each_annotators_latest_verdict_on_the_pair_as_sent(
    batch: PipelineConfig, storage: Storage
) -> None:
    tool = Tool()
    push(batch, storage, tool, BATCH)
    tasks = {r["task_id"]: r for r in storage.query("SELECT * FROM review_tasks").to_dicts()}
    first, second = sorted(tasks)[:2]
    shown = tasks[first]["chosen_shown"]
    other = "right" if shown == "left" else "left"
    tool.annotate(first, "ann@a", shown, "2026-12-07 10:00:00")
    tool.annotate(first, "ann@b", other, "2026-12-07 10:01:00")
    tool.annotate(first, "ann@a", "tie", "2026-12-07 11:00:00")  # changed their mind
    tool.annotate(second, "ann@a", "both_bad", "2026-12-07 10:02:00")
    tool.notes.append(
        {"task_id": second, "annotator": "ann@b", "annotated_at": "2026-12-07", "result": []}
    )  # skipped, with why

    report = pull(storage, tool, BATCH)
    assert (report.verdicts, report.annotators, len(report.skipped)) == (3, 2, 1)
    rows = storage.query(
        "SELECT pair_id, annotator, choice FROM human_verdicts ORDER BY pair_id, annotator"
    ).rows()
    assert sorted(rows) == sorted(
        [
            (tasks[first]["pair_id"], "ann@a", "tie"),
            (tasks[first]["pair_id"], "ann@b", "rejected"),
            (tasks[second]["pair_id"], "ann@a", "both_bad"),
        ]
    )
    assert pull(storage, tool, BATCH).verdicts == 3  # a second pull replaces, not adds


def test_nothing_to_review_says_what_to_do_first(batch: PipelineConfig, storage: Storage) -> None:
    with pytest.raises(NothingToReview, match="review push"):
        pull(storage, Tool(), BATCH)
    with pytest.raises(NothingToReview, match="run it first"):
        push(batch, storage, Tool(), "other.jsonl")
