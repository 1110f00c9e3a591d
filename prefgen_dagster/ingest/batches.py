"""Batch names: a batch is one instruction file in the inbox, named by its file name."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.ingest.read import SUPPORTED_SUFFIXES

if TYPE_CHECKING:
    from prefgen_dagster.storage.store import Storage

# A name is one file in the inbox: no separators, nothing hidden; dots inside a name (as in
# `a..b.jsonl`) are harmless, since no path part can be `..` without a separator.
_FORBIDDEN_IN_KEYS = ("/", "\\", ",", "[", "]", "\n", "\r", "\t", "\0")


def batch_file(config: PipelineConfig, batch_id: str) -> Path:
    """The inbox file behind a batch; a key can never point outside the inbox."""
    if not is_valid_batch_name(batch_id):
        raise ValueError(f"batch {batch_id!r} is not a plain file name in the inbox")
    inbox = config.resolve(config.paths.inbox_dir).resolve()
    path = (inbox / batch_id).resolve()
    if path.parent != inbox:
        raise ValueError(f"batch {batch_id!r} resolves outside the inbox {inbox}")
    return path


def is_valid_batch_name(name: str) -> bool:
    return (
        bool(name)
        and not name.startswith(".")
        and not any(part in name for part in _FORBIDDEN_IN_KEYS)
        and name.lower().endswith(SUPPORTED_SUFFIXES)
    )


def seen_in_other_batches(
    storage: Storage, batch_id: str, pipeline_hash: str
) -> dict[str, tuple[str, int]]:
    """Instruction id -> (batch, row) where another batch, ingested under the same pipeline
    settings (`stages.pipeline_hash`), already has it; the earliest ingested batch wins.

    Only batches stamped with the same settings count (under others, the same instruction
    gets other answers and pairs). The stamp is written at ingest: a batch whose later stages
    were re-run after a settings change keeps its old stamp until it is ingested again. The
    batch itself is left out, so materializing it again keeps its own rows; batches ingested
    before the stamp existed have none and are not compared against."""
    rows = storage.query(
        "SELECT i.instruction_id, i.batch_id, i.source_row "
        "FROM instructions AS i JOIN batches AS b USING (batch_id) "
        "WHERE b.pipeline_hash = ? AND i.batch_id <> ? "
        "ORDER BY b.ingested_at, i.batch_id, i.source_row",
        [pipeline_hash, batch_id],
    )
    seen: dict[str, tuple[str, int]] = {}
    for iid, batch, row in rows.iter_rows():
        seen.setdefault(iid, (batch, row))
    return seen
