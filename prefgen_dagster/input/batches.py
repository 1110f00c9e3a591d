"""Batch names: a batch is one instruction file in the inbox, named by its file name.

`prefgen run FILE` copies FILE into the inbox as `<inbox>/<FILE's name>`, so two files of the
same name from different folders would be the same batch, the second replacing the first's
rows. `place_in_inbox` lets a file take a name only when the inbox file of that name is
absent, is FILE itself, has the same bytes, or was copied from FILE's path before (the same
file, edited or grown); otherwise it refuses. Where a copy came from is in `batch_files`."""

from __future__ import annotations

import filecmp
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.input.read import SUPPORTED_SUFFIXES, InputFileError

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
    # A valid name has no separator, so only a link can lead out of the inbox: refused like
    # an unreadable file (`input.inbox.refused_aside` moves it aside), never read.
    try:
        path = (inbox / batch_id).resolve()
    except RuntimeError as err:  # a link loop
        raise InputFileError(f"{inbox / batch_id}: a link that leads nowhere: {err}") from err
    if path.parent != inbox:
        raise InputFileError(f"{inbox / batch_id}: a link to {path}, outside the inbox")
    return path


def is_valid_batch_name(name: str) -> bool:
    return (
        bool(name)
        and not name.startswith(".")
        and not any(part in name for part in _FORBIDDEN_IN_KEYS)
        and name.lower().endswith(SUPPORTED_SUFFIXES)
    )


def check_batch_name(file: Path) -> None:
    """Raise `InputFileError` (one line) when the file's name cannot name a batch."""
    if not is_valid_batch_name(file.name):
        raise InputFileError(
            f"{file}: not usable as a batch name (a plain file name: no leading dot, no "
            "backslash, comma, bracket or control character)"
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


def place_in_inbox(file: Path, config: PipelineConfig, storage: Storage) -> Path:
    """The inbox file of `file`'s batch, copied there from `file` unless that would replace
    another file's batch (see the module's docstring); `InputFileError` names both files
    then. DuckDB is read before anything is copied, so a file that cannot be opened stops
    the run with the inbox unchanged."""
    target = batch_file(config, file.name)
    if target.exists() and file.resolve() == target.resolve():
        return target  # the inbox's own file (e.g. dropped there for the sensor)
    source = os.path.abspath(file)
    recorded = copied_from(storage, file.name)
    if target.exists():
        if filecmp.cmp(file, target, shallow=False):
            return target  # the same bytes: nothing to copy, the name keeps its file
        if recorded != source:
            raise InputFileError(
                f"{file}: a batch named {file.name!r} already holds {recorded or target} "
                f"(different content); rename the file, or delete {target} to replace that batch"
            )
    with storage.connect() as con:
        con.execute(
            "INSERT OR REPLACE INTO batch_files (batch_id, copied_from) VALUES (?, ?)",
            [file.name, source],
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(file, target)
    return target


def copied_from(storage: Storage, batch_id: str) -> str | None:
    """The absolute path `prefgen run` last copied the batch's inbox file from, if any."""
    rows = storage.query("SELECT copied_from FROM batch_files WHERE batch_id = ?", [batch_id])
    return rows["copied_from"][0] if rows.height else None
