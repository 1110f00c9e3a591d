"""Builders for crafted DuckDB rows shared by the SQL, gate, pairing and export tests."""

from __future__ import annotations

from typing import Any


def instruction_row(iid: str, batch: str, text: str | None = None) -> dict[str, Any]:
    return {
        "batch_id": batch,
        "instruction_id": iid,
        "instruction": text or f"question {iid}",
        "system_prompt": None,
        "source": batch,
        "source_row": 1,
    }


def completion_row(cid: str, iid: str, batch: str, **fields: Any) -> dict[str, Any]:
    """A pooled completion with every NOT NULL column filled; `fields` override any column."""
    return {
        "batch_id": batch,
        "completion_id": cid,
        "instruction_id": iid,
        "model": f"model-of-{cid}",
        "backend": "vllm",
        "sampling": "{}",
        "sample_index": 0,
        "template_version": "t",
        "text": f"text of {cid}",
        "call_id": f"call-{cid}",
        **fields,
    }


def pair_row(
    pid: str,
    iid: str,
    chosen: str,
    rejected: str,
    chosen_rating: float | None,
    rejected_rating: float | None,
    batch: str,
    **fields: Any,
) -> dict[str, Any]:
    """A `dpo_pairs` row; the margin follows from the ratings (NULL if either is NULL)."""
    margin = (
        None
        if chosen_rating is None or rejected_rating is None
        else chosen_rating - rejected_rating
    )
    return {
        "batch_id": batch,
        "pair_id": pid,
        "instruction_id": iid,
        "chosen_completion_id": chosen,
        "rejected_completion_id": rejected,
        "chosen_rating": chosen_rating,
        "rejected_rating": rejected_rating,
        "margin": margin,
        "strategy": "best_vs_worst",
        **fields,
    }
