"""Shards: how a stage's requests for one model are cut for the workers of a Ray cluster, and
the files a worker leaves (`engines/ray_shards.py` runs them).

A request's shard is a hash of its call id modulo the number of shards, so a stage asked
again with the same requests cuts them the same way. A worker journals each answer beside
its shard as it arrives (`<name>.partial.jsonl`) and writes the whole shard as Parquet
(`<name>.parquet`) when it is done; the stage's process reads that file into the `llm_calls`
cache and removes it. A worker lost mid-shard leaves its journal: the shard asked again
(by Ray, on a restarted worker) sends only the requests the journal lacks. Files no worker
of this run wrote (a run that was killed) are read too, for the requests they answer.

Paths are fsspec URLs or local paths; the partial journal needs a filesystem that can
append (local disks, NFS; an object store keeps only finished shards).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import fsspec
import polars as pl

from prefgen_dagster.ids import stable_hash
from prefgen_dagster.llm.types import LLMRequest, LLMResult

PARTIAL = ".partial.jsonl"
FINISHED = ".parquet"
# Columns of a shard file: an engine's result for one request.
SCHEMA = {
    "call_id": pl.String,
    "text": pl.String,
    "finish_reason": pl.String,
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
    "latency_s": pl.Float64,
    "error": pl.String,
    "attempts": pl.Int64,
}


def plan_shards(requests: Sequence[LLMRequest], shard_size: int) -> list[list[LLMRequest]]:
    """The requests in ceil(len / shard_size) shards by call id (empty shards dropped),
    each keeping the order the requests came in."""
    count = max(1, math.ceil(len(requests) / shard_size))
    shards: list[list[LLMRequest]] = [[] for _ in range(count)]
    for request in requests:
        shards[int(request.call_id, 16) % count].append(request)
    return [shard for shard in shards if shard]


def model_prefix(model: str) -> str:
    """The start of every shard file name of one model (its identity, hashed)."""
    return f"m{stable_hash(model, 10)}-"


def shard_name(requests: Sequence[LLMRequest]) -> str:
    """The same requests always give the same name (one model per shard)."""
    return model_prefix(requests[0].model) + stable_hash(sorted(r.call_id for r in requests), 16)


def record(call_id: str, result: LLMResult) -> dict[str, Any]:
    """One row of a shard file."""
    return {
        "call_id": call_id,
        "text": result.text,
        "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "latency_s": result.latency_s,
        "error": result.error,
        "attempts": result.extra.get("attempts"),
    }


def result_of(row: dict[str, Any]) -> LLMResult:
    extra = {} if row.get("attempts") is None else {"attempts": row["attempts"]}
    return LLMResult(
        text=row["text"],
        finish_reason=row["finish_reason"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        latency_s=row["latency_s"] or 0.0,
        error=row["error"],
        extra=extra,
    )


class ShardFiles:
    """The shard folder (a local path or an fsspec URL)."""

    def __init__(self, location: str):
        self.fs, self.root = fsspec.core.url_to_fs(location)
        self.fs.makedirs(self.root, exist_ok=True)

    def _path(self, name: str, suffix: str) -> str:
        return f"{self.root.rstrip('/')}/{name}{suffix}"

    def journaled(self, name: str) -> dict[str, dict[str, Any]]:
        """The rows a worker journaled for this shard before it was lost (a line cut short
        by the loss is skipped)."""
        path = self._path(name, PARTIAL)
        if not self.fs.exists(path):
            return {}
        rows = {}
        with self.fs.open(path, "r", encoding="utf-8") as lines:
            for line in lines:
                with contextlib.suppress(ValueError):
                    row = json.loads(line)
                    rows[row["call_id"]] = row
        return rows

    @contextlib.contextmanager
    def journal(self, name: str) -> Iterator[io.TextIOBase | None]:
        """Append-only journal of one shard; None where the filesystem cannot append."""
        try:
            handle = self.fs.open(self._path(name, PARTIAL), "a", encoding="utf-8")
        except (NotImplementedError, ValueError):
            yield None
            return
        with handle:
            yield handle

    def finish(self, name: str, rows: Iterable[dict[str, Any]]) -> None:
        """Write the shard's Parquet (under a temporary name, then moved: a reader never
        sees half a file) and drop its journal."""
        path, partial = self._path(name, FINISHED), self._path(name, PARTIAL)
        with self.fs.open(f"{path}.tmp", "wb") as out:
            pl.DataFrame(list(rows), schema=SCHEMA).write_parquet(out)
        self.fs.mv(f"{path}.tmp", path)
        if self.fs.exists(partial):
            self.fs.rm(partial)

    def finished(self, name: str) -> bool:
        return self.fs.exists(self._path(name, FINISHED))

    def read(self, name: str) -> list[dict[str, Any]]:
        with self.fs.open(self._path(name, FINISHED), "rb") as data:
            return pl.read_parquet(data).to_dicts()

    def remove(self, name: str) -> None:
        self.fs.rm(self._path(name, FINISHED))

    def leftovers(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Every row of the finished shards and journals of one model that are still
        here: what runs that were killed got answered."""
        for path in sorted(self.fs.glob(f"{self.root.rstrip('/')}/{prefix}*")):
            name = path.rsplit("/", 1)[-1]
            if name.endswith(FINISHED):
                yield from self.read(name.removesuffix(FINISHED))
            elif name.endswith(PARTIAL):
                yield from self.journaled(name.removesuffix(PARTIAL)).values()
