"""Which inbox entries are batches, which are refused and why, and how a refused one is moved
aside: by stat calls and renames only, never by reading a file."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from prefgen_dagster.input.inbox import (
    REFUSED_DIR,
    move_aside,
    refused_aside,
    scan_inbox,
    was_refused,
)
from prefgen_dagster.input.read import InputFileError

NOW = time.time()


def put(folder: Path, name: str, text: str = '{"instruction": "hi"}\n', age: float = 10.0) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    os.utime(path, (NOW - age, NOW - age))
    return path


def link(folder: Path, name: str, target: Path, age: float = 10.0) -> Path:
    path = folder / name
    path.symlink_to(target)
    os.utime(path, (NOW - age, NOW - age), follow_symlinks=False)
    return path


def test_each_entry_is_a_batch_refused_or_left_alone(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    outside = put(tmp_path, "secret.jsonl")
    batch = put(inbox, "batch.jsonl")
    link(inbox, "latest.jsonl", batch)  # inside the inbox: the file it leads to
    link(inbox, "secret.jsonl", outside)
    link(inbox, "gone.jsonl", inbox / "missing.jsonl")
    link(inbox, "loop.jsonl", inbox / "loop.jsonl")
    put(inbox, "notes.txt")
    put(inbox, "a,b.csv")
    os.mkfifo(inbox / "pipe.jsonl")
    os.utime(inbox / "pipe.jsonl", (NOW - 10, NOW - 10))
    # Left alone: hidden, still downloading, a folder, empty, changed just now.
    put(inbox, ".hidden.jsonl")
    put(inbox, "big.jsonl.part")
    (inbox / "folder.jsonl").mkdir()
    put(inbox, "empty.jsonl", text="")
    put(inbox, "fresh.jsonl", age=0.5)
    put(inbox, "fresh.txt", age=0.5)

    scan = scan_inbox(inbox, NOW)

    stamp = [batch.stat().st_mtime_ns, batch.stat().st_size]
    assert scan.settled == {"batch.jsonl": stamp, "latest.jsonl": stamp}
    out = f"a link to {str(outside.resolve())!r}, outside the inbox"
    assert scan.refused == {
        "a,b.csv": "a batch name cannot hold ',', '[', ']', '\\', tabs or line breaks; rename it",
        "gone.jsonl": f"a link to {str(inbox.resolve() / 'missing.jsonl')!r}, which is not a file",
        "loop.jsonl": f"a link to {str(inbox.resolve() / 'loop.jsonl')!r}, which is not a file",
        "notes.txt": "unsupported file type '.txt'; use .jsonl, .json, .csv, .parquet",
        "pipe.jsonl": "not a regular file",
        "secret.jsonl": f"{out}; the sensor reads only files in the inbox (copy the file in, "
        "or `prefgen run` it)",
    }


def test_moving_aside_keeps_every_file_and_its_one_line_reason(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    put(inbox, "notes.txt", text="first")
    first = move_aside(inbox, "notes.txt", "why\nnot")
    put(inbox, "notes.txt", text="second")
    second = move_aside(inbox, "notes.txt", "again")

    refused = inbox / REFUSED_DIR
    assert (first, second) == (refused / "notes.txt", refused / "notes (2).txt")
    assert (first.read_text(), second.read_text()) == ("first", "second")
    assert (refused / "notes.txt.reason.txt").read_text() == "why not\n"
    assert (refused / "notes (2).txt.reason.txt").read_text() == "again\n"
    assert sorted(p.name for p in inbox.iterdir()) == [REFUSED_DIR]
    assert was_refused(inbox, "notes.txt")
    put(inbox, "notes.txt")  # a file took its place
    assert not was_refused(inbox, "notes.txt")
    assert not was_refused(inbox, "other.txt")


def test_a_link_is_moved_itself_never_its_target(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    outside = put(tmp_path, "secret.jsonl", text="private")
    link(inbox, "secret.jsonl", outside)
    moved = move_aside(inbox, "secret.jsonl", "a link out")
    assert moved.is_symlink() and moved.readlink() == outside
    assert outside.read_text() == "private"


def test_a_file_that_cannot_be_read_is_moved_aside_and_the_error_says_where(
    tmp_path: Path,
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    put(inbox, "bad.parquet", text="not parquet")
    moved = r"^bad: not Parquet \(moved to .*bad.parquet\)$"
    with pytest.raises(InputFileError, match=moved), refused_aside(inbox, "bad.parquet"):
        raise InputFileError("bad: not Parquet")
    assert (inbox / REFUSED_DIR / "bad.parquet.reason.txt").read_text() == "bad: not Parquet\n"

    put(inbox, "ok.jsonl")  # any other error is not the file's fault: it stays
    with pytest.raises(ValueError, match="config"), refused_aside(inbox, "ok.jsonl"):
        raise ValueError("config")
    assert (inbox / "ok.jsonl").exists()
    gone = "^gone: no such file$"  # nothing to move: the error as it was
    with pytest.raises(InputFileError, match=gone), refused_aside(inbox, "gone.jsonl"):
        raise InputFileError("gone: no such file")
