"""The inbox: which of its entries are batches, and where a refused one goes.

A sensor has 60 s and must not read data, so everything here lists, stats, resolves links
and renames; nothing opens an input file. A file that cannot be a batch is moved, not
deleted, into `<inbox>/.refused/` (hidden, so never a batch itself) with `NAME.reason.txt`
beside it, one line saying why. It is then out of the way: no tick looks at it again, and
a file put back under the same name (fixed) is a new file to the sensor.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from prefgen_dagster.input.batches import is_valid_batch_name
from prefgen_dagster.input.read import SUPPORTED_SUFFIXES, InputFileError

REFUSED_DIR = ".refused"
REASON_SUFFIX = ".reason.txt"
# A file modified within this many seconds may still be being written.
SETTLE_SECONDS = 2.0
# Names that download tools and copy programs write to before renaming the finished file:
# left alone like hidden names (rsync's temporary files are hidden), never refused.
IN_PROGRESS_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".tmp")


@dataclass
class InboxScan:
    """One look at the inbox: `settled` maps each batch file that has stopped changing to
    `[mtime_ns, size]` (a link's are its target's); `refused` maps each entry that can
    never be a batch to why."""

    settled: dict[str, list[int]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)


def scan_inbox(inbox: Path, now: float) -> InboxScan:
    """Batch files and refused entries; hidden names, names still being downloaded,
    folders, empty files and anything changed in the last `SETTLE_SECONDS` are neither."""
    scan = InboxScan()
    if not inbox.is_dir():
        return scan
    real_inbox = inbox.resolve()
    for path in sorted(inbox.iterdir()):
        name = path.name
        if name.startswith(".") or name.lower().endswith(IN_PROGRESS_SUFFIXES):
            continue
        try:
            entry = path.lstat()
            if stat.S_ISDIR(entry.st_mode) or now - entry.st_mtime < SETTLE_SECONDS:
                continue
            reason = refusal(real_inbox, path, entry)
            if reason is not None:
                scan.refused[name] = reason
                continue
            target = path.stat()  # a link's target, inside the inbox
        except FileNotFoundError:  # gone since the listing
            continue
        if now - target.st_mtime >= SETTLE_SECONDS and target.st_size > 0:
            scan.settled[name] = [target.st_mtime_ns, target.st_size]
    return scan


def refusal(real_inbox: Path, path: Path, entry: os.stat_result) -> str | None:
    """Why the inbox entry `path` (not hidden, not a folder; `entry` is its lstat) can never
    be a batch, or None. A link counts as the file it leads to when that is a file in the
    inbox itself (as `batch_file` reads it); a link out of the inbox is never followed."""
    name = path.name
    if not name.lower().endswith(SUPPORTED_SUFFIXES):
        return f"unsupported file type {path.suffix!r}; use {', '.join(SUPPORTED_SUFFIXES)}"
    if not is_valid_batch_name(name):
        return "a batch name cannot hold ',', '[', ']', '\\', tabs or line breaks; rename it"
    if stat.S_ISLNK(entry.st_mode):
        target = Path(os.path.realpath(path))
        if target.parent != real_inbox:
            return (
                f"a link to {str(target)!r}, outside the inbox; the sensor reads only files "
                "in the inbox (copy the file in, or `prefgen run` it)"
            )
        if not target.is_file():
            return f"a link to {str(target)!r}, which is not a file"
    elif not stat.S_ISREG(entry.st_mode):
        return "not a regular file"
    return None


def move_aside(inbox: Path, name: str, reason: str) -> Path:
    """Move the inbox entry `name` (a link itself, never its target) into `.refused/`, under
    a name no earlier refusal holds, with its one-line reason beside it; return where."""
    folder = inbox / REFUSED_DIR
    folder.mkdir(exist_ok=True)
    moved = folder / name
    stem, suffix = os.path.splitext(name)
    number = 1
    while _taken(moved):
        number += 1
        moved = folder / f"{stem} ({number}){suffix}"
    (inbox / name).rename(moved)
    reason_line = reason.replace("\r", " ").replace("\n", " ")
    _reason_file(moved).write_text(reason_line + "\n", encoding="utf-8")
    return moved


def was_refused(inbox: Path, name: str) -> bool:
    """Whether the batch's file was moved aside and nothing took its place in the inbox."""
    return not os.path.lexists(inbox / name) and os.path.lexists(inbox / REFUSED_DIR / name)


@contextmanager
def refused_aside(inbox: Path, name: str) -> Iterator[None]:
    """Reading a batch's file that raises `InputFileError` (corrupt, or a link out of the
    inbox) moves the file aside with that reason, so the catch-up schedule does not try it
    again every hour; the error, re-raised, says where the file went."""
    try:
        yield
    except InputFileError as err:
        try:
            moved = move_aside(inbox, name, str(err))
        except OSError:
            raise err from None  # the file is gone or cannot move: the reason still stands
        raise InputFileError(f"{err} (moved to {moved})") from err


def _reason_file(moved: Path) -> Path:
    return moved.with_name(moved.name + REASON_SUFFIX)


def _taken(moved: Path) -> bool:
    return os.path.lexists(moved) or os.path.lexists(_reason_file(moved))
