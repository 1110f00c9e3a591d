"""Builders for crafted DuckDB rows shared by the SQL, gate, pairing and export tests."""

from __future__ import annotations

from typing import Any

import polars as pl

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.sql.project import load_project
from prefgen_dagster.sql.vars import sql_vars
from prefgen_dagster.storage.store import Storage


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


def evolved_row(cid: str, iid: str, batch: str, **fields: Any) -> dict[str, Any]:
    """An EvolQuality rewrite (of a completion called "parent"); `fields` override any column."""
    return {
        "batch_id": batch,
        "completion_id": cid,
        "instruction_id": iid,
        "parent_completion_id": "parent",
        "root_completion_id": "parent",
        "model": f"model-of-{cid}",
        "mutation": "details",
        "round": 1,
        "sampling": "{}",
        "template_version": "t",
        "text": f"rewrite of {cid}",
        "call_id": f"call-{cid}",
        **fields,
    }


def rating_row(
    cid: str,
    iid: str,
    value: int | None,
    batch: str,
    judge: str = "judge",
    aspect: str = "overall",
    order: int = 0,
    **fields: Any,
) -> dict[str, Any]:
    """One judge's rating of a completion in one order; a NULL rating is a parse failure."""
    return {
        "batch_id": batch,
        "completion_id": cid,
        "instruction_id": iid,
        "judge": judge,
        "aspect": aspect,
        "judge_order": order,
        "order_name": ["original", "reversed", "rotated"][order],
        "position": 1,
        "rating": value,
        "raw_output": "raw",
        "parse_status": "ok" if value is not None else "unparseable",
        "attempts": 1,
        "call_id": f"judge-{cid}-{judge}-{aspect}-{order}",
        "judge_settings": "s",
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


def model_order(*until: str) -> list[str]:
    """The models `until` (default: dpo_pairs) and every SQL model they read, each after the
    models it refs, as their assets run."""
    models = load_project().models
    order: list[str] = []

    def visit(name: str) -> None:
        for ref in models[name].refs:
            if ref in models and ref not in order:
                visit(ref)
        if name not in order:
            order.append(name)

    for name in until or ("dpo_pairs",):
        visit(name)
    return order


def build_models(storage: Storage, config: PipelineConfig, batch: str, *until: str) -> pl.DataFrame:
    """Run the SQL models up to `until` for one batch (see `model_order`), writing each
    one's rows as its asset would; returns the rows of the last one run."""
    models = load_project().models
    frame = pl.DataFrame()
    for name in model_order(*until):
        frame = storage.query(*models[name].render(batch, sql_vars(config)))
        storage.replace_partition(name, batch, frame.with_columns(batch_id=pl.lit(batch)))
    return frame
