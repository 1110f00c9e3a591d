"""Instructions from a dataset that the `datasets` library loads: a Hub dataset
(`hf://datasets/ORG/NAME`, optionally `@REVISION`), a local folder laid out like a Hub
dataset repo (a README whose YAML names the configs and their data files), or a folder that
`save_to_disk` wrote.

One config and split of it (its first `limit` rows, if given) becomes one batch: a Parquet
file in the inbox named after the dataset, config, split, limit and revision, so a changed
dataset is a new batch and the batch made from the old one keeps its rows. From there it is an
instruction file like any other (validation, quarantine, dedup, reconciliation). The file
carries where it came from in its schema metadata (`dataset_of`), which the batch's row in
`batches` and the dataset card show.

The revision is the Hub commit where the data files name one, else a hash of the data files'
bytes. The Hub is reached, or not (`HF_HUB_OFFLINE=1`), and cached as the `datasets` library
does for the user (`HF_HOME`, `HF_DATASETS_CACHE`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pydantic import ValidationError

from prefgen_dagster.config import PipelineConfig
from prefgen_dagster.config.input import DatasetInput
from prefgen_dagster.input.read import InputFileError

HUB = "hf://datasets/"
# The schema metadata key of a batch file made from a dataset.
METADATA_KEY = b"prefgen.dataset"
_COMMIT = re.compile(r"@([0-9a-f]{40})/")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class DatasetError(InputFileError):
    """A dataset that cannot be loaded as asked; the message is one line naming it."""


def is_dataset(source: str) -> bool:
    """Whether `prefgen run SOURCE` names a dataset rather than an instruction file."""
    try:
        return source.startswith(HUB) or Path(source).is_dir()
    except OSError:  # a path the system refuses to look up: the file check says why
        return False


@dataclass(frozen=True)
class Resolved:
    """A dataset split located and versioned, not yet read."""

    wanted: DatasetInput
    revision: str
    # How to read it: the builder of a Hub-like dataset, or the folder save_to_disk wrote.
    builder: Any = None
    saved: Path | None = None
    # Local data files: the `datasets` cache knows them by the folder's name, not their
    # bytes, so a changed file would be read from the cache as it was.
    local: bool = False

    def batch_name(self) -> str:
        """The batch's file name: the dataset, config, split, limit and revision."""
        wanted = self.wanted
        name = wanted.name.removeprefix(HUB).split("@")[0].rstrip("/")
        base = name.replace("/", "--") if wanted.name.startswith(HUB) else Path(name).name
        parts = [base, wanted.config or "default", wanted.split]
        parts += [f"first{wanted.limit}"] if wanted.limit else []
        parts.append(self.revision[:12])
        return ".".join(_UNSAFE.sub("-", part) for part in parts) + ".parquet"


def resolve(wanted: DatasetInput, base_dir: Path) -> Resolved:
    """Locate the split and its revision without reading its rows; `DatasetError` names the
    dataset and the reason in one line (no such dataset, config or split; offline and not
    cached)."""
    import datasets

    location = wanted.name if wanted.name.startswith(HUB) else str(base_dir / wanted.name)
    try:
        if not wanted.name.startswith(HUB) and _is_saved(Path(location)):
            folder = _saved_split(Path(location), wanted)
            return Resolved(wanted, _content_hash(sorted(folder.iterdir())), saved=folder)
        repo, _, revision = location.removeprefix(HUB).partition("@")
        builder = datasets.load_dataset_builder(repo, wanted.config, revision=revision or None)
        files = builder.config.data_files or {}
        if wanted.split not in files:
            known = ", ".join(files) or "none"
            raise DatasetError(f"{wanted.name}: no split {wanted.split!r} (splits: {known})")
        shards = [str(file) for file in files[wanted.split]]
        commits = {match.group(1) for shard in shards if (match := _COMMIT.search(shard))}
        if len(commits) == 1:
            return Resolved(wanted, commits.pop(), builder=builder)
        # Files without a commit: a local folder's, or a Hub dataset's from the cache offline
        # (read from the cache as it is: there is nothing to fetch).
        local = not wanted.name.startswith(HUB)
        return Resolved(wanted, _content_hash(map(Path, shards)), builder=builder, local=local)
    except DatasetError:
        raise
    except Exception as err:  # the datasets library's own, for a name, config or network
        reason = " ".join(str(err).split()) or type(err).__name__
        raise DatasetError(f"{wanted.name}: cannot be loaded: {reason}") from err


def snapshot(resolved: Resolved, inbox: Path) -> Path:
    """The batch file of a resolved split in the inbox, written (atomically, under a hidden
    name first, so the inbox sensor never sees half a file) unless it is there already."""
    target = inbox / resolved.batch_name()
    if target.exists():
        return target
    import datasets

    wanted = resolved.wanted
    if resolved.saved is not None:
        data = datasets.load_from_disk(str(resolved.saved))
    else:
        # Local files are read again for each new revision (without checking them against
        # the split sizes the cache recorded for the old ones).
        fresh = {"download_mode": "force_redownload", "verification_mode": "no_checks"}
        resolved.builder.download_and_prepare(**(fresh if resolved.local else {}))
        data = resolved.builder.as_dataset(split=wanted.split)
    if wanted.limit is not None:
        data = data.select(range(min(wanted.limit, data.num_rows)))
    table = data.with_format("arrow")[:]
    origin = {**wanted.model_dump(mode="json"), "revision": resolved.revision}
    metadata = {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(origin).encode()}
    inbox.mkdir(parents=True, exist_ok=True)
    partial = inbox / f".{target.name}.{os.getpid()}.partial"
    pq.write_table(table.replace_schema_metadata(metadata), partial)
    partial.replace(target)
    return target


def dataset_of(path: Path) -> dict[str, Any] | None:
    """Where a batch file made by `snapshot` came from (name, config, split, limit,
    revision); None for any other file."""
    if path.suffix.lower() != ".parquet":
        return None
    try:
        metadata = pq.read_schema(path).metadata or {}
    except Exception:  # not Parquet: reading the rows says why, a row at a time
        return None
    found = metadata.get(METADATA_KEY)
    return json.loads(found) if found else None


def _is_saved(folder: Path) -> bool:
    return (folder / "dataset_dict.json").exists() or (folder / "state.json").exists()


def _saved_split(folder: Path, wanted: DatasetInput) -> Path:
    """The folder of the wanted split of what save_to_disk wrote (a DatasetDict has one per
    split; a single Dataset is its own)."""
    if not (folder / "dataset_dict.json").exists():
        return folder
    splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
    if wanted.split not in splits:
        known = ", ".join(splits)
        raise DatasetError(f"{wanted.name}: no split {wanted.split!r} (splits: {known})")
    return folder / wanted.split


def _content_hash(files: Iterable[Path]) -> str:
    """A hash of the files' names and bytes: the revision of a dataset without a commit.
    The inbox sensor asks for it every tick; files whose size and modification time are
    as they were are not read again (`_hashed`)."""
    stamps = []
    for file in files:
        stat = file.stat()
        stamps.append((str(file.resolve()), stat.st_size, stat.st_mtime_ns))
    return _hashed(tuple(stamps))


@functools.lru_cache(maxsize=64)
def _hashed(stamps: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for path, _, _ in stamps:
        digest.update(Path(path).name.encode() + b"\0")
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def dataset_input(source: str, flags: dict[str, Any], config: PipelineConfig) -> DatasetInput:
    """The dataset split `prefgen run SOURCE` asks for: the `input.datasets` entry of the
    same dataset, if any, with the command line's flags over it. A folder is named by its
    absolute path (the command line's are relative to the working directory)."""
    name = source if source.startswith(HUB) else str(Path(source).resolve())
    same = [
        entry
        for entry in config.input.datasets
        if entry.name == name or str(config.resolve(entry.name).resolve()) == name
    ]
    given = {key: value for key, value in flags.items() if value is not None}
    fields = {**(same[0].model_dump() if same else {}), **given, "name": name}
    try:
        return DatasetInput.model_validate(fields)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise DatasetError(f"{source}: {problems}") from err


def watched_into_inbox(config: PipelineConfig, inbox: Path) -> tuple[list[Path], list[str]]:
    """Each `input.datasets` split's batch file for its current revision, made in `inbox`
    where it is not yet (the inbox sensor then sees a new file): (the files made, a line
    for each dataset that could not be loaded)."""
    made, problems = [], []
    for wanted in config.input.datasets:
        try:
            resolved = resolve(wanted, Path(config.base_dir))
            if not (inbox / resolved.batch_name()).exists():
                made.append(snapshot(resolved, inbox))
        except DatasetError as err:
            problems.append(str(err))
    return made, problems
