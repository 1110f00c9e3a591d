"""What an LLM stage is. The loop that every LLM stage runs (keep the stored rows of unchanged
units, ask the rest round after round, stamp each row with its unit's key) is written once,
in `llm/driver.py`; a stage supplies only its part:

* `LLMStage.work`: read its inputs for a batch and plan the first request(s) of every unit
  (a `Work`);
* `Work.answered`: turn one round's answers into finished rows and the follow-up requests
  of the next round (a regeneration, a rewrite of the rewrite, a re-ask);
* `LLMStage.outputs` / `LLMStage.report`: the tables it writes from its rows, and what it
  tells a person about them (metadata and log lines, plain values: the Dagster layer turns
  them into metadata).

A new stage is a folder with one `LLMStage` and its `Work`, plus one line in the registry
(`defs/assets.py: LLM_STAGES`); `tests/unit/llm/test_stage_contract.py` adds a toy one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.llm.plan import Planned
from prefgen_dagster.stages import Stage
from prefgen_dagster.storage.schema import TABLES
from prefgen_dagster.storage.store import Storage


@dataclass
class Round:
    """What a round of answers gave: finished rows, each with the request it came from (its
    unit's key is stamped on it), and the requests to ask in the next round."""

    rows: list[tuple[Planned, dict[str, Any]]] = field(default_factory=list)
    follow_up: list[Planned] = field(default_factory=list)


class Work(ABC):
    """One batch's work for a stage. `plans` are the first requests of every unit, in plan
    order (a unit's key hashes them, see `llm/reuse.py`); `rounds` is the most rounds of
    asking (the first included)."""

    plans: list[Planned]
    rounds: int

    @abstractmethod
    def unit_of(self, plan: Planned) -> Hashable:
        """The unit a request belongs to: what the stage decides as a whole."""

    def identity(self, plan: Planned) -> Any:
        """What of a first request goes into its unit's key (by default its call id)."""
        return plan.request.call_id

    def start(self, todo: set[Hashable]) -> list[Planned]:
        """The first round's requests: those of the units to do (the others are kept)."""
        return [plan for plan in self.plans if self.unit_of(plan) in todo]

    @abstractmethod
    def answered(
        self, plans: list[Planned], answers: dict[str, dict[str, Any]], attempt: int
    ) -> Round:
        """Round `attempt` (0-based) asked `plans`; `answers` by call id (an answer with an
        `error` failed for good)."""


@dataclass(frozen=True)
class Batch:
    """The batch a stage works on: the run's config, the DuckDB file, the batch's id."""

    config: PipelineConfig
    storage: Storage
    batch_id: str


@dataclass
class Report:
    """What a stage tells a person about its output: metadata entries (numbers, strings,
    dicts and lists, `Markdown`, or `Plot`s under "plots") and lines for the run's log."""

    metadata: dict[str, Any] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Markdown:
    """A metadata entry that is markdown text (a table, a list)."""

    text: str


class LLMStage(ABC):
    """An LLM stage: its registry entry (`spec`: asset, tables, config section, code), the
    assets it reads, the columns its asset previews, and its part of the loop."""

    spec: Stage
    deps: tuple[str, ...]
    preview: tuple[str, ...]

    @abstractmethod
    def work(self, batch: Batch) -> Work:
        """Read the batch's inputs and plan every unit's first requests."""

    def frame(self, rows: list[dict[str, Any]]) -> pl.DataFrame:
        """New rows typed like the stage's table (`storage/schema.py`); a table the schema
        does not know is made from its first rows, as a SQL model's is."""
        table = TABLES.get(self.spec.table)
        return pl.DataFrame(rows) if table is None else table.frame(rows)

    def outputs(self, frame: pl.DataFrame, work: Work, batch: Batch) -> dict[str, pl.DataFrame]:
        """The tables to write for the batch, from the stage's rows (kept and new): by
        default the rows alone, into the stage's table."""
        return {self.spec.table: frame}

    def warnings(self, config: PipelineConfig) -> list[str]:
        """What to warn about before the stage asks anything."""
        return []

    def report(self, outputs: dict[str, pl.DataFrame], batch: Batch) -> Report:
        """Metadata and log lines about the written outputs."""
        return Report()
