"""`prefgen inspect`: one pair's story, every hop, from crafted rows in a tmp DuckDB."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.export.story import story
from prefgen_dagster.storage.store import Storage
from tests.unit.rows import build_models, completion_row, evolved_row, instruction_row, rating_row

BATCH = "b1.jsonl"
Insert = Callable[[str, list[dict[str, Any]]], None]


@pytest.fixture
def paired(storage: Storage, insert_rows: Insert, config: PipelineConfig) -> Storage:
    """One instruction: two pooled completions (one failed for good), one rewrite, ratings."""
    insert_rows("instructions", [instruction_row("i1", BATCH, "How do tides work?")])
    insert_rows(
        "completions",
        [
            completion_row("a", "i1", BATCH, text="The moon pulls the sea.", finish_reason="stop"),
            completion_row("gone", "i1", BATCH, text=None, error="InternalServerError: boom"),
        ],
    )
    insert_rows(
        "evolved_completions",
        [
            evolved_row(
                "e",
                "i1",
                BATCH,
                parent_completion_id="a",
                root_completion_id="a",
                text="The moon's gravity raises two bulges of water.",
                finish_reason="stop",
            )
        ],
    )
    storage.save_calls(
        [{"call_id": "call-a", "model": "m", "request": "{}", "response": "r", "latency_s": 1.5}]
    )
    insert_rows(
        "ratings",
        [
            rating_row("a", "i1", 2, BATCH, rationale="vague", raw_output='{"ratings": [2, 5]}'),
            rating_row("e", "i1", 5, BATCH, rationale="precise", raw_output='{"ratings": [2, 5]}'),
        ],
    )
    build_models(storage, config, BATCH)
    return storage


def test_a_pairs_story_has_every_hop(paired: Storage) -> None:
    [pair_id] = paired.query("SELECT pair_id FROM dpo_pairs")["pair_id"]
    text = story(paired, pair_id)
    for hop in (
        "instruction i1",
        f"from {BATCH} row 1",
        "How do tides work?",
        "pooled completions",
        "The moon pulls the sea.",
        "gone",
        "FAILED: InternalServerError: boom",
        "call call-a (run None, 1.50 s)",
        "EvolQuality rewrites",
        "round 1 of a, criterion details",
        "raises two bulges of water",
        "judge answers",
        "a: 2 (ok)",
        "rationale: vague",
        'raw answer (call judge-a-judge-overall-0): {"ratings": [2, 5]}',
        "pairing (candidate_pairs)",
        f"*{pair_id}  chosen e (5.00) over a (2.00), margin 3.00: kept",
    ):
        assert hop in text, hop
    assert story(paired, "i1") == text.replace(f"*{pair_id}", f" {pair_id}")
    assert "no blocking check has run yet" in text


def test_an_unknown_id_is_one_clear_error(paired: Storage) -> None:
    with pytest.raises(LookupError, match="nope: no pair, instruction or completion"):
        story(paired, "nope")
