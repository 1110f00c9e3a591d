"""Batch names: a batch is one instruction file in the inbox, named by its file name."""

from __future__ import annotations

from pathlib import Path

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.ingest.read import SUPPORTED_SUFFIXES

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
