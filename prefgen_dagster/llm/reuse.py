"""Incremental LLM stages: a stage keeps the rows it wrote before for every unit of work
whose requests and settings are unchanged, and plans, asks and builds rows only for the rest.

A unit is what one stage decides as a whole: an instruction's completions (the diversity
guard compares them with each other), a pooled completion's chain of rewrites, a group of
texts a judge compares. Its key (`plan_key`, stored on each of its rows) hashes the stage's
code version (its code and its settings, `stages.Stage.code_version`) with the unit's first
requests (their call ids, which hash the prompts, models, sampling and seeds) and the rows
they are for. The cache makes a unit's rows a function of that key: the same requests get
the same answers, and whatever the stage does with them (regenerations, rewrites of
rewrites, re-asks of unparseable verdicts) follows from the answers and the settings.

So a grown batch plans every unit (cheap) but asks, parses and scores only its new ones,
and a rerun keeps everything. A unit with a failed request is never kept: its rows are made
again, so the failed request is asked again as before (see `runner.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import polars as pl

from prefgen_dagster.ids import stable_hash
from prefgen_dagster.llm.plan import Planned
from prefgen_dagster.storage.schema import TABLES
from prefgen_dagster.storage.store import Storage

P = TypeVar("P", bound=Planned)


def unit_keys(
    plans: Iterable[P],
    unit_of: Callable[[P], Hashable],
    version: str,
    identity: Callable[[P], Any] = lambda plan: plan.request.call_id,
) -> dict[Hashable, str]:
    """Each unit's key from its first requests, in plan order: the stage's `version` and
    `identity` of every plan of the unit (by default its call id)."""
    parts: dict[Hashable, list[Any]] = {}
    for plan in plans:
        parts.setdefault(unit_of(plan), []).append(identity(plan))
    return {unit: stable_hash([version, unit_parts]) for unit, unit_parts in parts.items()}


@dataclass
class Kept:
    """What a stage keeps from its stored rows, and what it still has to do."""

    rows: pl.DataFrame  # the kept units' stored rows
    todo: set[Hashable]  # the units to plan, ask and build rows for
    requests: int  # distinct requests behind the kept rows (not asked, not looked up)


def stored_units(storage: Storage, table: str, batch_id: str) -> pl.DataFrame:
    """The batch's stored rows of `table` from units that have a key and no row with an
    error (a failed request is asked again, so its unit is made again)."""
    made_by_first_run = table not in TABLES  # a stage's table the schema does not know
    if made_by_first_run and table not in storage.column_types():
        return pl.DataFrame(schema={"plan_key": pl.String, "call_id": pl.String})
    return storage.query(
        f"SELECT * FROM {table} WHERE batch_id = ? AND plan_key IS NOT NULL "
        "QUALIFY bool_and(error IS NULL) OVER (PARTITION BY plan_key)",
        [batch_id],
    )


def keep(stored: pl.DataFrame, keys: dict[Hashable, str]) -> Kept:
    """The stored rows of the units whose key is unchanged; every other unit is to do."""
    found = set(stored["plan_key"].unique().to_list()) & set(keys.values())
    rows = stored.filter(pl.col("plan_key").is_in(list(found)))
    return Kept(
        rows=rows,
        todo={unit for unit, key in keys.items() if key not in found},
        requests=rows["call_id"].n_unique(),
    )


def with_kept(kept: Kept, new: pl.DataFrame) -> pl.DataFrame:
    """The stage's frame: the kept rows and the `new` ones (typed like the table; a table
    made from its first rows has no columns while nothing is new)."""
    if new.width == 0:
        return kept.rows
    if kept.rows.is_empty():
        return new
    return pl.concat([kept.rows.select(new.columns).cast(new.schema), new])
