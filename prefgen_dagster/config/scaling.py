"""Where the vLLM stages run: in this process (the default), or on a Ray cluster."""

from __future__ import annotations

from pydantic import Field

from prefgen_dagster.config.base import Strict


class RayConfig(Strict):
    """The LLM stages on Ray (`llm/engines/ray_shards.py`, `docs/scaling.md`). Only models
    with the `vllm` backend go there; OpenAI-compatible servers are called from the stage's
    own process. None of these settings changes a row or a cache key."""

    # None: engines in this process. "auto" (a cluster this machine belongs to),
    # "host:port" (the head's GCS), "ray://host:10001" (Ray Client), or "local" (start a
    # Ray instance on this machine for the run's process).
    address: str | None = None
    # A stage's requests for one model are cut into ceil(requests / shard_size) shards by a
    # hash of the request; a shard is what a worker answers in one go and what a lost
    # worker loses at most (its finished answers are journaled beside the shard).
    shard_size: int = Field(1000, gt=0)
    # Workers (Ray actors, each holding one engine) per model.
    workers_per_model: int = Field(1, gt=0)
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    # A path (relative to the config's folder) or an fsspec URL that every worker and this
    # process can reach: workers write each shard's answers there as Parquet, and this
    # process moves them into the llm_calls cache.
    shard_dir: str = "data/shards"
    # How often Ray restarts a lost worker (and asks its unfinished shard again).
    max_restarts: int = Field(3, ge=0)
